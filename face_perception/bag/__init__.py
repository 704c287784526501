"""rosbag2 files without a ROS runtime: reading/writing bags and processing them offline."""
