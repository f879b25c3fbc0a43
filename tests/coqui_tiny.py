"""Build a tiny, randomly initialised Coqui VITS checkpoint for tests (not a test module).

The model is made from Coqui's real config classes and saved the way Coqui's own training
writes checkpoints (``model.pth`` holding ``{"model": state_dict}`` + ``config.json``), so the
engine loads it through exactly the code path an operator's real checkpoint takes. Random
weights produce noise: tests assert sample rates, types and lengths, never what it sounds like.

Hidden sizes are tiny (a few hundred kB of weights) so loading and synthesis take milliseconds
on the 2-core test machine. ``build_tiny_xtts`` makes an in-memory XTTS the same way (a GPT of
one layer; the HiFi-GAN decoder and its speaker encoder keep their fixed sizes, about 23 M
random parameters, built in a quarter of a second): enough to run XTTS's conditioning code,
not to speak (it has no tokenizer). docs/stack-notes.md: in coqui-tts 0.28 ``VitsAudioConfig`` is gone (the audio
section is a ``BaseAudioConfig``) and ``Vits(config)`` replaces ``Vits.init_from_config``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

TINY_SAMPLE_RATE_HZ = 16_000
# Upsampling product of the decoder == hop length (4 * 4 * 4 = 64 samples per frame).
_UPSAMPLE = [4, 4, 4]
_FRAMES_PER_TOKEN = 5.0


def build_tiny_vits(
    folder: Path,
    *,
    use_phonemes: bool = False,
    speakers: list[str] | None = None,
    seed: int = 0,
) -> Path:
    """Write ``folder/model.pth`` and ``folder/config.json`` for a tiny VITS; return ``folder``.

    ``use_phonemes=False`` feeds characters (no espeak-ng in the loop); ``True`` phonemizes with
    espeak-ng like Coqui's released English VITS. ``speakers`` makes it a multi-speaker model
    (a speaker embedding table plus a ``speaker_ids.json`` next to the checkpoint).
    """
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    hop = 1
    for rate in _UPSAMPLE:
        hop *= rate
    audio = BaseAudioConfig(
        sample_rate=TINY_SAMPLE_RATE_HZ, fft_size=256, win_length=256, hop_length=hop,
        num_mels=16, mel_fmin=0.0, mel_fmax=None, do_trim_silence=False,
    )
    args = VitsArgs(
        out_channels=256 // 2 + 1,
        hidden_channels=16,
        hidden_channels_ffn_text_encoder=32,
        num_heads_text_encoder=2,
        num_layers_text_encoder=1,
        num_layers_posterior_encoder=1,
        num_layers_flow=1,
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3, 5]],
        upsample_rates_decoder=list(_UPSAMPLE),
        upsample_initial_channel_decoder=16,
        upsample_kernel_sizes_decoder=[r * 2 for r in _UPSAMPLE],
        use_sdp=False,
        init_discriminator=False,
        speaker_embedding_channels=8,
    )
    config = VitsConfig(
        audio=audio,
        model_args=args,
        use_phonemes=use_phonemes,
        phonemizer="espeak" if use_phonemes else None,
        phoneme_language="en-us" if use_phonemes else None,
        text_cleaner="english_cleaners" if use_phonemes else "basic_cleaners",
        characters=None if use_phonemes else CharactersConfig(
            characters_class="TTS.tts.utils.text.characters.Graphemes",
            characters="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
            punctuations="!'(),-.:;? ",
            pad="<PAD>", eos="<EOS>", bos="<BOS>", blank="<BLNK>",
        ),
        add_blank=True,
        test_sentences=[],
    )
    if speakers:
        speakers_file = folder / "speaker_ids.json"
        speakers_file.write_text(json.dumps({name: i for i, name in enumerate(speakers)}))
        config.use_speaker_embedding = True
        config.model_args.use_speaker_embedding = True
        config.num_speakers = len(speakers)
        config.model_args.num_speakers = len(speakers)
        config.speakers_file = str(speakers_file)
        config.model_args.speakers_file = str(speakers_file)
    model = Vits(config)
    # Random durations hover around one frame per token, where VITS's ceil() hides
    # length_scale; a constant ~5 frames per token makes speed changes show in the length.
    with torch.no_grad():
        model.duration_predictor.proj.weight.zero_()
        model.duration_predictor.proj.bias.fill_(math.log(_FRAMES_PER_TOKEN))
    model.eval()
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    return folder


def build_tiny_xtts(*, seed: int = 0, **config: object):
    """An in-memory, randomly initialised ``(Xtts, XttsConfig)``; ``config`` overrides fields of
    the ``XttsConfig`` (``max_ref_len=3``...)."""
    import torch
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts, XttsArgs

    torch.manual_seed(seed)
    args = XttsArgs(
        gpt_layers=1, gpt_n_model_channels=32, gpt_n_heads=2, gpt_number_text_tokens=40,
        gpt_start_text_token=1, gpt_stop_text_token=2, gpt_max_text_tokens=40,
        gpt_max_audio_tokens=20, gpt_max_prompt_tokens=20, gpt_use_perceiver_resampler=True,
        decoder_input_dim=32,
    )
    xtts_config = XttsConfig(model_args=args)
    for name, value in config.items():
        setattr(xtts_config, name, value)
    model = Xtts(xtts_config)
    model.eval()
    return model, xtts_config
