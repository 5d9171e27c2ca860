"""The charging manager's shell: configuration, device instances, the control loop."""
