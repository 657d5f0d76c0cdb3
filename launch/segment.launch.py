"""Start the PSPNet segmentation node with a parameter file and an image topic remap."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    params_file = LaunchConfiguration('params_file')
    namespace = LaunchConfiguration('namespace')
    image_topic = LaunchConfiguration('image_topic')
    camera_info_topic = LaunchConfiguration('camera_info_topic')
    use_sim_time = LaunchConfiguration('use_sim_time')
    fastdds_profile = LaunchConfiguration('fastdds_profile')
    cameras = LaunchConfiguration('cameras')

    def node(context):
        # cameras:='[front, left, right]' (or 'front,left,right'): one node serves them all,
        # each on <name>/image and ~/<name>/mask ...; empty keeps the params_file's cameras.
        text = context.perform_substitution(cameras).strip().strip('[]')
        names = [n.strip().strip('\'"') for n in text.replace(',', ' ').split()]
        parameters = [params_file, {'use_sim_time': use_sim_time}]
        if names:
            parameters.append({'cameras': names})
        # Camera-sized frames (640x480 and up) need a larger Fast DDS shared-memory segment
        # than the default. The profile goes into this node's environment only: a launch
        # that includes this one keeps the middleware settings of its other processes (give
        # the camera driver the same profile, in its own action or by exporting it).
        profile = context.perform_substitution(fastdds_profile).strip()
        env = {'FASTDDS_DEFAULT_PROFILES_FILE': profile} if profile else {}
        return [Node(
            package='pspnet_ros',
            executable='segment_node',
            name='pspnet_segmentation',
            namespace=namespace,
            parameters=parameters,
            # image_topic and camera_info_topic are for the single-camera node; remap named
            # cameras' topics with ros_args (front/image:=...) or a namespace.
            remappings=[('image', image_topic),
                        ('image/compressed', [image_topic, '/compressed']),
                        ('camera_info', camera_info_topic)],
            additional_env=env,
            output='screen',
            emulate_tty=True,
        )]

    return LaunchDescription([
        DeclareLaunchArgument(
            'fastdds_profile',
            default_value=PathJoinSubstitution([FindPackageShare('pspnet_ros'), 'config',
                                                'fastdds_large_frames.xml']),
            description='Fast DDS XML profile given to the node as '
                        'FASTDDS_DEFAULT_PROFILES_FILE (its process only); empty = the node '
                        'inherits the environment as it is'),
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution([FindPackageShare('pspnet_ros'), 'config',
                                                'segment.yaml']),
            description='YAML file with the node parameters'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace for the node and its outputs'),
        DeclareLaunchArgument('image_topic', default_value='/camera/image_raw',
                              description='camera image topic (raw transport)'),
        DeclareLaunchArgument('camera_info_topic', default_value='/camera/camera_info',
                              description='camera info topic (used if use_camera_info)'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='use /clock (rosbag replay)'),
        DeclareLaunchArgument('cameras', default_value='',
                              description='camera names served by one node, e.g. '
                                          '"[front, left, right]"; empty = the params_file\'s '
                                          '(one camera by default)'),
        OpaqueFunction(function=node),
    ])
