"""Camera image payloads and the per-face fields carried in vision_msgs messages (ROS-free)."""
