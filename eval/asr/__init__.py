"""ASR evaluation by slice (`make eval`, issue #14): WER and CER of a release
(a model and its settings) over real speech, sliced by utterance length,
speaking rate and added noise, and two releases compared slice by slice."""
