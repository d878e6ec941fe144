"""The image builder reads what it needs of the guest without importing it."""

from ktstr.guest import LAZY_IMPORTS
from ktstr.initramfs.image import lazy_imports


def test_lazy_imports_are_read_from_the_guest_source_as_the_guest_declares_them():
    assert lazy_imports() == LAZY_IMPORTS
    assert "ktstr.guest.scenario" in lazy_imports()
