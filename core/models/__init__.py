"""Models on offline clusters: ``forge model stage|hydrate|verify|list`` and the preflight check.

Models live in the standard Hugging Face cache under ``${storage.root}/hf``,
which every job uses as ``HF_HOME`` with ``HF_HUB_OFFLINE=1``. Modules here
import huggingface_hub only inside the functions that need it.
"""
