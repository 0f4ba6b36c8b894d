"""MIM's Gradio web demo. ``from demo.app import build_demo, launch_options``."""
