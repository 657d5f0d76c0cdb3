"""Offline training tools (config, losses, teacher, data, loop, validation, checkpoint import);
the runtime in ``pspnet_ros.core`` never imports this package."""
