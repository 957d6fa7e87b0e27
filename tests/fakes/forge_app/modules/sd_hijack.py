"""`modules.sd_hijack`: the textual-inversion embedding database."""

from types import SimpleNamespace

model_hijack = SimpleNamespace(embedding_db=SimpleNamespace(word_embeddings={}))
