"""``python -m pspnet_ros.segment_node``: the node's entry point (code in ``pspnet_ros.node``)."""
from .node.segment_node import main

if __name__ == '__main__':
    main()
