import pytest

from ktstr.errors import ConfigError
from ktstr.topology import Topology


def test_parse_and_format_round_trip():
    t = Topology.parse("2n4l2c2t")
    assert (t.numa_nodes, t.llcs, t.cores_per_llc, t.threads_per_core) == (2, 4, 2, 2)
    assert t.name == str(t) == "2n4l2c2t"
    assert t.cpus == 16


@pytest.mark.parametrize("text", ["", "1n2l", "0n1l1c1t", "1n2l2c", "a1n1l1c1t", "1n1l1c1t "])
def test_malformed_or_zero_refused(text):
    if text == "1n1l1c1t ":
        assert Topology.parse(text).name == "1n1l1c1t"
        return
    with pytest.raises(ConfigError) as err:
        Topology.parse(text)
    assert str(err.value).endswith(".")


def test_llcs_must_divide_over_nodes():
    with pytest.raises(ConfigError, match="cannot be split evenly"):
        Topology(2, 3, 2, 1)


def test_max_cpus_default_and_override(monkeypatch):
    Topology(1, 14, 9, 2)  # 252 vCPUs: the default maximum
    with pytest.raises(ConfigError, match="more than the maximum 252"):
        Topology(1, 1, 253, 1)
    monkeypatch.setenv("KTSTR_MAX_CPUS", "8")
    with pytest.raises(ConfigError, match="KTSTR_MAX_CPUS"):
        Topology(1, 1, 9, 1)


def test_non_integer_counts_refused():
    with pytest.raises(ConfigError, match="integer"):
        Topology(1, 1.5, 1, 1)
    with pytest.raises(ConfigError, match="integer"):
        Topology(True, 1, 1, 1)


def test_layout_uses_qemu_numbering():
    t = Topology.parse("2n4l2c2t")
    assert t.smt_groups()[:2] == [[0, 1], [2, 3]]
    assert t.llc_groups() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    assert t.node_groups() == [list(range(8)), list(range(8, 16))]
    assert t.layout()["cpus"] == 16


def test_qemu_args_one_socket_per_llc_and_memfd_per_node():
    t = Topology.parse("2n4l2c2t", memory_mib=1024)
    args = t.qemu_args()
    assert args[args.index("-smp") + 1] == "16,sockets=4,cores=2,threads=2"
    assert args[args.index("-m") + 1] == "1024"
    joined = " ".join(args)
    assert "memory-backend-memfd,id=mem0,size=512M,share=on" in joined
    assert "node,nodeid=1,cpus=8-15,memdev=mem1" in joined
    assert "dist,src=0,dst=1,val=20" in joined


def test_default_memory_scales_and_splits_evenly():
    t = Topology.parse("4n8l2c1t")
    assert t.memory >= 512 + 16 * t.cpus
    assert sum(t.node_memory()) == t.memory
    assert len(set(t.node_memory())) == 1


def test_too_little_memory_refused():
    with pytest.raises(ConfigError, match="too little memory"):
        Topology.parse("2n2l1c1t", memory_mib=100)
