"""ROS 2 layer: the only part of face_perception that imports rclpy and message packages."""
