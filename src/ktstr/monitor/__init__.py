"""Host-side reads of a running guest kernel's memory, with drgn.

``program.attach`` builds a ``drgn.Program`` over a live VM's RAM; the
other modules are small readers of one kind of kernel state each
(``rq``: per-CPU run queues, ``scx``: sched_ext), taking that program.
"""
