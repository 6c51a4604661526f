"""Audio in and out at 24 kHz mono in frames of 1920 samples: microphone, speaker, WAV files, devices.

Nothing here imports sounddevice at import time; it is loaded when a device is listed or opened.
"""

from kame_cli.audio_io.devices import (
    AudioDevice,
    choose_stream_format,
    list_devices,
    negotiate_stream_format,
    render_devices_table,
    resolve_device,
)
from kame_cli.audio_io.files import FileSource, open_audio_file
from kame_cli.audio_io.frames import FrameAssembler, FrameCallback, FrameSink, FrameSource, SampleFifo
from kame_cli.audio_io.microphone import MicrophoneSource
from kame_cli.audio_io.resampling import StreamResampler
from kame_cli.audio_io.speaker import SpeakerSink
from kame_cli.audio_io.tee import TeeSink
from kame_cli.audio_io.wav import WavSink

__all__ = [
    "AudioDevice",
    "FileSource",
    "FrameAssembler",
    "FrameCallback",
    "FrameSink",
    "FrameSource",
    "MicrophoneSource",
    "SampleFifo",
    "SpeakerSink",
    "StreamResampler",
    "TeeSink",
    "WavSink",
    "choose_stream_format",
    "list_devices",
    "negotiate_stream_format",
    "open_audio_file",
    "render_devices_table",
    "resolve_device",
]
