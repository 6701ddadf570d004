"""espnet-pathways: ASR pathways (sparse multilingual streaming RNN-T) as an ESPnet plugin."""
from setuptools import find_packages, setup

setup(
    name="espnet_pathways",
    version="0.1.0",
    description="ASR pathways: language-specific sub-networks of one multilingual "
    "streaming RNN-T, as an ESPnet2 plugin and egs2 recipe",
    packages=find_packages(include=["espnet_pathways", "espnet_pathways.*"]),
    python_requires=">=3.10,<3.12",
    # One pip pass resolves these on Python 3.11 (espnet 202511 is the newest release
    # for 3.11 and pins setuptools<74, which rules out torch>=2.13 beside it).
    install_requires=[
        "espnet==202511",
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "sentencepiece",
        "kaldiio",
        "pyyaml",
        "soundfile",
        "tensorboard",
        "matplotlib",
        "espnet_model_zoo",
        "kaldialign==0.12.0",  # WER/CER alignments when sclite (sctk) is not installed
        # espnet2 imports g2p_en at start-up, which imports inflect; inflect 6+ decorates
        # its functions with typeguard, which instruments them at import: ~3-5 s of CPU
        # in every process that imports espnet2 (each training, decoding job, report).
        # We never use g2p; 5.6 has the same API and imports in ~30 ms.
        "inflect>=5.6,<6",
    ],
    extras_require={"test": ["pytest"]},
)
