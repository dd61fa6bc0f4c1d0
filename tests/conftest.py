"""Every test's kit store is encrypted: the passphrase comes from the environment, as it
does for scripts, and new stores use a cheap key derivation (recorded in their key file)."""

import os

os.environ.setdefault("POPUP_KIT_PASSPHRASE", "booth passphrase for tests")
os.environ.setdefault("POPUP_KIT_TEST_CHEAP_KDF", "1")
