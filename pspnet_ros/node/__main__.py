"""The node's entry point: ``ros2 run pspnet_ros segment_node`` or ``python -m pspnet_ros.node``.

Order matters (``docs/ARCHITECTURE.md``, "Thread pools"): the CPU thread pools are set up
(passive waiting, threads from the usable CPUs) before torch, numpy or onnxruntime load, and
libgomp's spin count waits for the node's configuration (one camera: none; several: about
0.1 ms), so torch loads only when the node builds its model. Nothing above ``main`` imports
them.

Every SIGINT or SIGTERM, at any moment (start-up, configure, spinning, clean-up, after a
lifecycle shutdown), ends the process with exit code 0 and no traceback.
"""
import signal
import sys
import threading

from ..core.threads import configure_threads

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def params_files(args: list[str]) -> list[str]:
    """The files given as ``--params-file FILE`` inside the ``--ros-args`` sections of
    ``args`` (a section ends at ``--``)."""
    out, in_ros, i = [], False, 0
    while i < len(args):
        a = args[i]
        if a == '--ros-args':
            in_ros = True
        elif a == '--':
            in_ros = False
        elif in_ros and a == '--params-file' and i + 1 < len(args):
            out.append(args[i + 1])
            i += 1
        i += 1
    return out


def check_params_files(args: list[str]) -> str:
    """'' when every ``--params-file`` reads as a YAML mapping, else one line saying which
    file, where and what (rcl's own report of a YAML error is a 9-line traceback)."""
    from ..core.yamlfile import load_yaml, weights_file_hint
    for path in params_files(args):
        if weights_file_hint(path):
            return f'parameter file {path} is a weights or model file, not YAML parameters'
        try:
            data = load_yaml(path)
        except ValueError as exc:
            return f'parameter file {exc}'
        if data is not None and not isinstance(data, dict):
            return (f'parameter file {path}: expected a mapping of node names to '
                    f'ros__parameters (e.g. "/**:"), got a {type(data).__name__}')
    return ''


def main(args=None) -> None:
    configure_threads(spin=None)
    problem = check_params_files(sys.argv[1:] if args is None else list(args))
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        sys.exit(2)
    # A signal only sets this flag (no KeyboardInterrupt that could land in the middle of a
    # configure or a clean-up). rclpy.init installs its own handlers in front of these: they
    # shut the context down, which wakes the executor, then call this one.
    stop = threading.Event()
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, frame: stop.set())

    from ..core.threads import limit_malloc_arenas
    # Before rclpy starts the DDS threads and the node its pools: every thread would otherwise
    # get its own arena, and a multi-camera node's RSS grows with them.
    memory_note = limit_malloc_arenas()
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from .segment_node import SegmentNode
    if stop.is_set():
        return
    rclpy.init(args=args)
    node = executor = None
    try:
        node = SegmentNode(memory_note=memory_note)
        if not stop.is_set() and rclpy.ok():
            node.autostart()
        if not stop.is_set() and rclpy.ok():
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            # A bounded wait: the flag is seen within 0.5 s even if a wake-up is missed.
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A callback that raced the shutdown of a signal (e.g. the diagnostics timer publishing
        # on an invalid context after SIGTERM) is not an error of the node; one while ROS still
        # runs is.
        if rclpy.ok() and not stop.is_set():
            raise
    finally:
        # Ctrl-C in the terminal of `ros2 launch` reaches the node twice (the terminal's
        # process group, then launch), and a supervisor may follow SIGINT with SIGTERM: further
        # signals must not break the clean-up (bounded by the inference threads' 10 s).
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node._close_inference()
            node.destroy_node()
        rclpy.try_shutdown()
        # try_shutdown puts back the handlers rclpy found at init (this module's flag).
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


if __name__ == '__main__':
    main()
