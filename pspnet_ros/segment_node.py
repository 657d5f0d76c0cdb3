"""``segment_node`` / ``python -m pspnet_ros.segment_node``: the node's entry point.

It sets up the CPU thread pools (passive waiting, threads from the usable CPUs) before torch,
numpy or onnxruntime load, then starts the node (code in ``pspnet_ros.node``).
"""
from .core.threads import configure_threads


def main(args=None) -> None:
    configure_threads()
    from .node.segment_node import main as node_main
    node_main(args)


if __name__ == '__main__':
    main()
