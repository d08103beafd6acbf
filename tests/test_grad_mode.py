"""Grad modes: set_grad_enabled / no_grad / enable_grad as context managers, decorators and
plain calls; nesting; exceptions; thread-locality."""
from __future__ import annotations

import threading

import pytest

import verigrad as vg


@pytest.fixture(autouse=True)
def _restore_mode():
    assert vg.is_grad_enabled(), "a previous test leaked a disabled grad mode"
    yield
    vg.set_grad_enabled(True)


def _records() -> bool:
    x = vg.tensor(1.0, requires_grad=True)
    y = x * 2
    assert y.requires_grad == (y.grad_fn is not None)
    return y.requires_grad


def test_default_is_enabled_and_ops_record():
    assert vg.is_grad_enabled() is True
    assert vg.autograd.is_grad_enabled is vg.is_grad_enabled
    assert _records()


def test_set_grad_enabled_plain_call_takes_effect_immediately():
    vg.set_grad_enabled(False)
    assert vg.is_grad_enabled() is False and not _records()
    vg.set_grad_enabled(True)
    assert vg.is_grad_enabled() is True and _records()


def test_set_grad_enabled_as_context_manager():
    with vg.set_grad_enabled(False):
        assert not vg.is_grad_enabled() and not _records()
        with vg.set_grad_enabled(True):
            assert vg.is_grad_enabled() and _records()
        assert not vg.is_grad_enabled()
    assert vg.is_grad_enabled()
    with vg.no_grad():
        with vg.set_grad_enabled(True):
            assert _records()
        assert not vg.is_grad_enabled()
    assert vg.is_grad_enabled()


def test_set_grad_enabled_as_decorator():
    @vg.set_grad_enabled(False)
    def off():
        """doc"""
        return vg.is_grad_enabled(), _records()

    assert vg.is_grad_enabled()  # making the decorator must not switch the mode
    assert off() == (False, False)
    assert vg.is_grad_enabled()
    assert off.__name__ == "off" and off.__doc__ == "doc"

    @vg.set_grad_enabled(True)
    def on():
        return vg.is_grad_enabled()

    with vg.no_grad():
        assert on() is True
        assert not vg.is_grad_enabled()


def test_set_grad_enabled_rejects_non_bool():
    with pytest.raises(TypeError):
        vg.set_grad_enabled(0)
    assert vg.is_grad_enabled()
    assert repr(vg.set_grad_enabled(True)) == "set_grad_enabled(mode=True)"


def test_no_grad_and_enable_grad_context_managers_nest():
    with vg.no_grad():
        assert not vg.is_grad_enabled() and not _records()
        with vg.enable_grad():
            assert vg.is_grad_enabled() and _records()
            with vg.no_grad():
                assert not vg.is_grad_enabled()
            assert vg.is_grad_enabled()
        assert not vg.is_grad_enabled()
    assert vg.is_grad_enabled()
    with vg.enable_grad():
        assert vg.is_grad_enabled()
    assert vg.is_grad_enabled()


@pytest.mark.parametrize("parens", [True, False])
def test_no_grad_and_enable_grad_decorators(parens):
    no_grad = vg.no_grad() if parens else vg.no_grad
    enable_grad = vg.enable_grad() if parens else vg.enable_grad

    @no_grad
    def off(a, b=2):
        """off doc"""
        return a + b, vg.is_grad_enabled(), _records()

    @enable_grad
    def on():
        return vg.is_grad_enabled(), _records()

    assert off(1, b=3) == (4, False, False)
    assert vg.is_grad_enabled()
    assert off.__name__ == "off" and off.__doc__ == "off doc"
    with vg.no_grad():
        assert on() == (True, True)
        assert not vg.is_grad_enabled()
        assert off(0)[1] is False
        assert not vg.is_grad_enabled()


def test_grad_mode_objects():
    assert isinstance(vg.no_grad(), vg.no_grad)
    assert isinstance(vg.enable_grad(), vg.enable_grad)
    assert vg.autograd.no_grad is vg.no_grad and vg.autograd.enable_grad is vg.enable_grad
    assert vg.autograd.set_grad_enabled is vg.set_grad_enabled


def test_mode_restored_after_exceptions():
    with pytest.raises(ValueError):
        with vg.no_grad():
            raise ValueError
    assert vg.is_grad_enabled()
    with pytest.raises(ValueError):
        with vg.set_grad_enabled(False):
            raise ValueError
    assert vg.is_grad_enabled()

    @vg.no_grad
    def boom():
        raise KeyError

    with pytest.raises(KeyError):
        boom()
    assert vg.is_grad_enabled()
    with vg.no_grad():
        with pytest.raises(ValueError):
            with vg.enable_grad():
                raise ValueError
        assert not vg.is_grad_enabled()


def test_decorated_generator_runs_each_step_in_the_mode():
    @vg.no_grad()
    def gen(n):
        got = yield vg.is_grad_enabled()
        yield got, vg.is_grad_enabled(), _records()
        return n

    g = gen(5)
    assert vg.is_grad_enabled()
    assert next(g) is False
    assert vg.is_grad_enabled()  # restored between steps
    assert g.send("hi") == ("hi", False, False)
    with pytest.raises(StopIteration) as info:
        next(g)
    assert info.value.value == 5
    assert vg.is_grad_enabled()

    @vg.enable_grad
    def gen2():
        try:
            yield 1
        except KeyError:
            yield vg.is_grad_enabled()

    with vg.no_grad():
        g = gen2()
        next(g)
        assert g.throw(KeyError()) is True
        assert not vg.is_grad_enabled()
        g.close()


def test_backward_restores_the_mode_and_runs_without_recording():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    assert vg.is_grad_enabled() and not x.grad.requires_grad
    with pytest.raises(vg.GraphFreedError):
        y.backward()
    assert vg.is_grad_enabled()
    with vg.no_grad():
        z = (x * x).sum()
    assert z.grad_fn is None
    with vg.no_grad():
        x2 = vg.tensor([1.0], requires_grad=True)
        w = x2 * 3
    assert not w.requires_grad
    with vg.enable_grad():
        w = (x2 * 3).sum()
    with vg.no_grad():  # backward works inside no_grad, as in PyTorch
        w.backward()
        assert not vg.is_grad_enabled()
    assert x2.grad.tolist() == [3.0]


def test_custom_function_forward_runs_without_grad():
    seen = []

    class Probe(vg.Function):
        @staticmethod
        def forward(ctx, x):
            seen.append(vg.is_grad_enabled())
            return x * 2

        @staticmethod
        def backward(ctx, g):
            seen.append(vg.is_grad_enabled())
            return g * 2

    class Fails(vg.Function):
        @staticmethod
        def forward(ctx, x):
            raise ValueError("bad")

    x = vg.tensor([1.0], requires_grad=True)
    y = Probe.apply(x)
    assert y.grad_fn.name() == "ProbeBackward"
    y.sum().backward()
    assert seen == [False, False] and vg.is_grad_enabled()
    with pytest.raises(ValueError):
        Fails.apply(x)
    assert vg.is_grad_enabled()


def test_grad_mode_is_thread_local():
    barrier = threading.Barrier(2, timeout=10)
    seen: dict[str, object] = {}
    errors: list[BaseException] = []

    def worker():
        try:
            seen["start"] = vg.is_grad_enabled()  # main is inside no_grad here
            barrier.wait()  # 1: main saw its own mode
            vg.set_grad_enabled(False)  # plain call in this thread only
            seen["after_set"] = vg.is_grad_enabled()
            seen["records"] = _records()
            barrier.wait()  # 2: main checks it is unaffected
            barrier.wait()  # 3: main left no_grad (enabled again)
            seen["still_off"] = vg.is_grad_enabled()
            with vg.enable_grad():
                seen["inner"] = vg.is_grad_enabled()
            seen["end"] = vg.is_grad_enabled()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
            barrier.abort()

    with vg.no_grad():
        t = threading.Thread(target=worker)
        t.start()
        barrier.wait()  # 1
        assert not vg.is_grad_enabled()
        barrier.wait()  # 2
        assert not vg.is_grad_enabled()
    assert vg.is_grad_enabled()  # the worker's set_grad_enabled(False) did not leak here
    assert _records()
    barrier.wait()  # 3
    t.join(10)
    assert not errors, errors
    assert seen == {"start": True, "after_set": False, "records": False, "still_off": False,
                    "inner": True, "end": False}
    assert vg.is_grad_enabled()


def test_threads_record_independently():
    results = {}
    start = threading.Barrier(3, timeout=10)

    def run(name, enabled):
        vg.set_grad_enabled(enabled)
        start.wait()
        x = vg.tensor([1.0, 2.0], requires_grad=True)
        for _ in range(200):
            y = x * 2
        results[name] = (vg.is_grad_enabled(), y.requires_grad)

    threads = [threading.Thread(target=run, args=("on", True)),
               threading.Thread(target=run, args=("off", False))]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join(10)
    assert results == {"on": (True, True), "off": (False, False)}
    assert vg.is_grad_enabled()
