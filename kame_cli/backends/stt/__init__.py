"""Streaming speech-to-text: faster-whisper (CTranslate2) with LocalAgreement commits and VAD turns.

Import the parts from their modules (`worker`, `recognizer`, `model`): this package stays light.
"""
