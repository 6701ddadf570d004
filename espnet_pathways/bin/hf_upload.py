#!/usr/bin/env python3
"""Upload a packed pathway model to the Hugging Face Hub (ESPnet's model-zoo layout).

    python -m espnet_pathways.bin.hf_upload --model exp/asr_pathways_imp/pathways.zip \
        --repo_id <user>/espnet_pathways_imp [--private true] [--dry_run true]

What ESPnet's ``asr.sh`` upload stage does: the zip from ``asr_pathways_pack`` is
extracted into a staging folder (``meta.yaml`` at the top, files under their packed
paths), a ``README.md`` model card is written, and the folder is pushed with
``huggingface_hub``.  Anyone can then use it with
``PathwaySpeech2Text.from_pretrained("<user>/espnet_pathways_imp", lang="it")``
(``espnet_model_zoo`` downloads it with ``snapshot_download``).

Needs: the ``huggingface_hub`` package, a token (``--token``, ``$HF_TOKEN`` or
``huggingface-cli login``) and network access to the Hub (``$HF_ENDPOINT``, default
https://huggingface.co).  Without any of them the command stops before uploading and says
what is missing (exit status 2).  The zip is checked first (every member's CRC, every
file its config names): a truncated or incomplete zip is an error (exit status 1).  ``--dry_run true`` only prepares and lists the folder.
"""
import argparse
import logging
import os
import shutil
import socket
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional
from urllib.parse import urlparse

from espnet2.utils.types import str2bool, str_or_none

from espnet_pathways.bin._cli import run, setup_logging

EXIT_NOT_READY = 2


class UploadNotPossible(RuntimeError):
    """Something the upload needs is missing (package, token, network)."""


def hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except Exception:  # no huggingface_hub: still say where it would go
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def find_token(token: Optional[str] = None) -> Optional[str]:
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:
        return os.environ.get("HF_TOKEN") or None


def reachable(endpoint: str, timeout: float = 5.0) -> Optional[str]:
    """None if a TCP connection to the endpoint opens, else the reason."""
    u = urlparse(endpoint)
    host = u.hostname
    port = u.port or (443 if u.scheme == "https" else 80)
    if not host:
        return f"bad endpoint URL {endpoint!r}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"{type(e).__name__}: {e}"


def check_ready(token: Optional[str] = None, timeout: float = 5.0) -> str:
    """The token to use, or :class:`UploadNotPossible` listing everything that is missing."""
    problems: List[str] = []
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        problems.append("the huggingface_hub package is not installed: "
                        "pip install huggingface_hub")
    tok = find_token(token)
    if not tok:
        problems.append("no Hugging Face token: create a write token at "
                        "https://huggingface.co/settings/tokens, then run "
                        "`huggingface-cli login`, set $HF_TOKEN or pass --token")
    endpoint = hub_endpoint()
    why = reachable(endpoint, timeout)
    if why is not None:
        problems.append(f"no network access to the Hub at {endpoint} ({why}): run this "
                        "on a machine that can reach it (or set $HF_ENDPOINT)")
    if problems:
        raise UploadNotPossible(
            "cannot upload to the Hugging Face Hub:\n  - " + "\n  - ".join(problems)
            + "\nThe packed zip is complete; copy it to a connected machine and rerun.")
    return tok  # type: ignore[return-value]


def model_card(repo_id: str, info: dict, license_: str) -> str:
    langs = info.get("languages") or []
    lang_lines = "".join(f"- {lang}\n" for lang in langs)
    example_lang = langs[0] if langs else "xx"
    lm_line = ("an RNN LM, fused into the beam search at the weights of the packed decoding "
               "config (`use_lm=False` / `--use_lm false`: the acoustic model alone)"
               if info.get("lm") else "none")
    return f"""---
tags:
- espnet
- audio
- automatic-speech-recognition
- asr-pathways
library_name: espnet
language:
{lang_lines}license: {license_}
---

# {repo_id}

A multilingual streaming RNN-T with one pathway (binary weight mask) per language,
trained with espnet-pathways (Yang et al., *Learning ASR pathways:
a sparse multilingual ASR model*, ICASSP 2023).

- languages: {' '.join(langs) or 'n/a'}
- storage: {'compact (weights of the union of the pathways only)' if info.get('compact') else 'dense state dict + masks'}
- language model: {lm_line}

## Use

```python
from espnet_pathways.inference import PathwaySpeech2Text

s2t = PathwaySpeech2Text.from_pretrained("{repo_id}", lang="{example_lang}", streaming=True)
hyps = s2t.decode_streaming_utterance(speech)   # 16 kHz float32 numpy array
print(s2t.text(hyps))
```

or `python -m espnet_pathways.bin.recognize --model {repo_id} --lang {example_lang} --wav utt.wav`.
"""


def stage_folder(model_zip: Path, folder: Path, repo_id: str, license_: str) -> List[str]:
    """Extract the zip (as ``unzip`` would: no path rewriting) and write README.md."""
    import yaml

    folder.parent.mkdir(parents=True, exist_ok=True)
    # Extracted beside the folder and swapped in whole: no half-extracted folder remains.
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with zipfile.ZipFile(model_zip) as z:
            z.extractall(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from espnet_pathways.packing import is_lm_key

    meta = yaml.safe_load((folder / "meta.yaml").read_text(encoding="utf-8"))
    cfg_rel = meta["yaml_files"]["asr_train_config"]
    cfg = yaml.safe_load((folder / cfg_rel).read_text(encoding="utf-8"))
    info = {"languages": cfg.get("languages") or [],
            "compact": "pathway_compact_model" in meta.get("files", {}),
            "lm": any(is_lm_key(k) for k in meta.get("files", {}))}
    (folder / "README.md").write_text(model_card(repo_id, info, license_), encoding="utf-8")
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="Zip written by asr_pathways_pack")
    p.add_argument("--repo_id", required=True, help="<user or org>/<name> on the Hub")
    p.add_argument("--token", type=str_or_none, default=None)
    p.add_argument("--private", type=str2bool, default=False)
    p.add_argument("--license", default="other", help="Model-card license id")
    p.add_argument("--staging_dir", type=str_or_none, default=None,
                   help="Where to prepare the folder (default: <zip>.hf/)")
    p.add_argument("--dry_run", type=str2bool, default=False,
                   help="Prepare and list the folder, check nothing, upload nothing")
    p.add_argument("--timeout", type=float, default=5.0, help="Network check timeout (s)")
    p.add_argument("--log_level", type=lambda x: x.upper(), default="INFO")
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    setup_logging(args.log_level)
    model_zip = Path(args.model)
    if not model_zip.is_file():
        raise FileNotFoundError(f"{model_zip}: packed model not found "
                                "(make it with python -m espnet_pathways.bin.asr_pathways_pack)")
    from espnet_pathways.packing import check_packed_zip

    check_packed_zip(model_zip)  # a truncated zip is never called "complete" below
    if args.dry_run:
        token = None
    else:
        token = check_ready(args.token, args.timeout)  # before any work
    folder = Path(args.staging_dir or f"{model_zip}.hf")
    files = stage_folder(model_zip, folder, args.repo_id, args.license)
    if args.dry_run:
        print(f"dry run: would upload {len(files)} files from {folder} to {args.repo_id}:")
        for f in files:
            print(f"  {f}")
        return 0
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    user = api.whoami()["name"]
    logging.info("logged in to the Hub as %s", user)
    api.create_repo(args.repo_id, private=args.private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(folder_path=str(folder), repo_id=args.repo_id,
                               repo_type="model",
                               commit_message=f"Upload {model_zip.name} (espnet-pathways)")
    print(f"uploaded to {hub_endpoint()}/{args.repo_id} ({commit})")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, exit_codes={UploadNotPossible: EXIT_NOT_READY}))
