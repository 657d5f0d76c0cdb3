"""``segment_node`` / ``python -m pspnet_ros.segment_node``: the node's entry point.

It sets up the CPU thread pools (passive waiting, threads from the usable CPUs) before torch,
numpy or onnxruntime load, then starts the node (code in ``pspnet_ros.node``). libgomp's spin
count waits for the node's configuration (one camera: none; several: about 0.1 ms), so torch
loads only when the node builds its model.
"""
from .core.threads import configure_threads


def main(args=None) -> None:
    configure_threads(spin=None)
    from .node.segment_node import main as node_main
    node_main(args)


if __name__ == '__main__':
    main()
