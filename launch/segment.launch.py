"""Start the PSPNet segmentation node with a parameter file and an image topic remap."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import LaunchConfigurationNotEquals
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
            output='screen',
            emulate_tty=True,
        )]

    return LaunchDescription([
        # Camera-sized frames (640x480 and up) need a larger Fast DDS shared-memory segment
        # than the default; the profile applies to every process this launch starts after
        # this point (add the camera driver here too, or export the variable for it).
        DeclareLaunchArgument(
            'fastdds_profile',
            default_value=PathJoinSubstitution([FindPackageShare('pspnet_ros'), 'config',
                                                'fastdds_large_frames.xml']),
            description='Fast DDS XML profile set as FASTDDS_DEFAULT_PROFILES_FILE for the '
                        'processes of this launch; empty = leave the environment as it is'),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', fastdds_profile,
                               condition=LaunchConfigurationNotEquals('fastdds_profile', '')),
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
