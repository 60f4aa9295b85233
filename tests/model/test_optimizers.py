"""Optimizers and schedules: PyTorch's rules on plain arrays, state round trips,
clipping, validation. (Whole-model parity is in test_training_torch.py.)"""

import numpy as np
import pytest

from fastcnn import optimizers, schedules
from fastcnn.optimizers import SGD, Adam, AdamW, RMSprop

OPTIMIZERS = [
    lambda: SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda: Adam(0.01, amsgrad=True, weight_decay=0.01),
    lambda: AdamW(0.01),
    lambda: RMSprop(0.01, momentum=0.5, centered=True),
]


def quadratic_run(opt, steps, params=None, start=0):
    """Minimise sum(a * p**2) with gradients 2 a p; returns the params."""
    rng = np.random.default_rng(0)
    if params is None:
        params = {"0.weight": rng.standard_normal((3, 4)),
                  "1.bias": rng.standard_normal(5).astype(np.float32)}
    scale = {k: 1.0 + np.arange(p.size).reshape(p.shape) for k, p in params.items()}
    for _ in range(start, steps):
        opt.step([(k, p, (2 * scale[k] * p).astype(p.dtype))
                  for k, p in params.items()])
    return params


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_updates_in_place_keep_dtype_and_descend(make):
    params = {"0.weight": np.ones((2, 3)), "0.bias": np.ones(2, dtype=np.float32)}
    ids = {k: id(p) for k, p in params.items()}
    quadratic_run(make(), 20, params)
    for key, p in params.items():
        assert id(p) == ids[key]
        assert np.all(np.abs(p) < 1.0)
    assert params["0.bias"].dtype == np.float32


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_state_round_trip_continues_bitwise(make):
    full = quadratic_run(make(), 10)
    opt = make()
    part = quadratic_run(opt, 4)
    arrays, scalars = opt.get_state()
    restored = type(opt)(**opt.get_config())
    restored.set_state({k: v.copy() for k, v in arrays.items()}, dict(scalars))
    assert restored.iterations == 4
    resumed = quadratic_run(restored, 10, params=part, start=4)
    for key in full:
        assert full[key].tobytes() == resumed[key].tobytes()


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "SGD"])
def test_get_by_name(name):
    assert isinstance(optimizers.get(name), optimizers.Optimizer)


def test_get_rejects_unknown_names_and_types():
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        optimizers.get("adagrad")
    with pytest.raises(TypeError, match="optimizer must be"):
        optimizers.get(3)
    with pytest.raises(ValueError, match="unknown optimizer type 'Nope'"):
        optimizers.from_config({"class_name": "Nope", "config": {}})


def test_config_round_trip():
    for make in OPTIMIZERS:
        opt = make()
        again = optimizers.from_config({"class_name": type(opt).__name__,
                                        "config": opt.get_config()})
        assert again.get_config() == opt.get_config()


def test_clipvalue_clips_elements_and_leaves_grads_alone():
    opt = SGD(1.0, clipvalue=0.5)
    p = np.zeros(3)
    g = np.array([-2.0, 0.1, 3.0])
    opt.step([("w", p, g)])
    np.testing.assert_array_equal(p, [0.5, -0.1, -0.5])
    np.testing.assert_array_equal(g, [-2.0, 0.1, 3.0])


def test_clipnorm_rescales_global_norm():
    opt = SGD(1.0, clipnorm=1.0)
    p1, p2 = np.zeros(2), np.zeros(1)
    opt.step([("a", p1, np.array([3.0, 0.0])), ("b", p2, np.array([4.0]))])
    # Global norm 5 -> factor 1/(5 + 1e-6), as torch.nn.utils.clip_grad_norm_.
    coef = 1.0 / (5.0 + 1e-6)
    np.testing.assert_allclose(np.concatenate([p1, p2]), [-3 * coef, 0, -4 * coef],
                               rtol=1e-15)
    small = SGD(1.0, clipnorm=10.0)
    q = np.zeros(1)
    small.step([("a", q, np.array([2.0]))])
    assert q[0] == -2.0


def test_sgd_first_step_uses_gradient_as_momentum_buffer():
    opt = SGD(0.1, momentum=0.9)
    p = np.zeros(1)
    opt.step([("w", p, np.array([1.0]))])
    opt.step([("w", p, np.array([1.0]))])
    # torch: buf = g, then buf = 0.9 * buf + g = 1.9.
    assert p[0] == pytest.approx(-0.1 - 0.19, abs=1e-15)


def test_adam_first_step_is_lr_times_sign():
    opt = Adam(0.01)
    p = np.zeros(2)
    opt.step([("w", p, np.array([3.0, -0.5]))])
    np.testing.assert_allclose(p, [-0.01, 0.01], rtol=1e-6)
    assert int(opt.state["w"]["step"]) == 1


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SGD(-0.1), "lr"),
        (lambda: SGD("0.1"), "lr"),
        (lambda: SGD(0.1, momentum=-1), "momentum"),
        (lambda: SGD(0.1, nesterov=True), "nesterov"),
        (lambda: SGD(0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
        (lambda: SGD(0.1, nesterov=1), "nesterov"),
        (lambda: SGD(0.1, clipnorm=0), "clipnorm"),
        (lambda: SGD(0.1, clipvalue=-1.0), "clipvalue"),
        (lambda: Adam(betas=(0.9, 1.0)), r"betas\[1\]"),
        (lambda: Adam(betas=0.9), "betas"),
        (lambda: Adam(eps=-1e-8), "eps"),
        (lambda: AdamW(weight_decay=-0.1), "weight_decay"),
        (lambda: RMSprop(alpha=-0.5), "alpha"),
        (lambda: RMSprop(centered="yes"), "centered"),
    ],
)
def test_bad_hyper_parameters(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_set_state_rejects_malformed_keys():
    with pytest.raises(ValueError, match="'<param>/<slot>'"):
        SGD(0.1).set_state({"nokey": np.zeros(1)}, {})


# ------------------------------------------------------------------- schedules


def test_step_multistep_exponential_values():
    assert [schedules.StepLR(2, 0.5)(e, 1.0) for e in range(5)] == [
        1.0, 1.0, 0.5, 0.5, 0.25]
    assert [schedules.MultiStepLR([1, 3], 0.1)(e, 1.0) for e in range(4)] == [
        1.0, pytest.approx(0.1), pytest.approx(0.1), pytest.approx(0.01)]
    assert schedules.ExponentialLR(0.5)(3, 2.0) == 0.25


def test_cosine_with_warmup_shape():
    s = schedules.CosineWithWarmup(warmup_steps=4, total_steps=14, min_lr=0.1)
    lrs = [s(t, 1.0) for t in range(16)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == 1.0
    assert lrs[9] == pytest.approx(0.55)
    assert lrs[14] == pytest.approx(0.1) and lrs[15] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: schedules.StepLR(0), "step_size"),
        (lambda: schedules.StepLR(1.5), "step_size"),
        (lambda: schedules.MultiStepLR([3, 1]), "milestones"),
        (lambda: schedules.MultiStepLR(3), "milestones"),
        (lambda: schedules.ExponentialLR(-0.5), "gamma"),
        (lambda: schedules.CosineWithWarmup(5, 5), "total_steps"),
        (lambda: schedules.OneCycle(0.0, 10), "max_lr"),
        (lambda: schedules.OneCycle(0.1, 10, anneal_strategy="exp"),
         "anneal_strategy"),
        (lambda: schedules.OneCycle(0.1, 10, pct_start=1.5), "pct_start"),
    ],
)
def test_bad_schedule_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_one_cycle_rejects_steps_past_the_end():
    with pytest.raises(ValueError, match="total_steps"):
        schedules.OneCycle(0.1, 10)(10, 0.1)


@pytest.mark.torch
class TestAgainstTorch:
    @pytest.fixture(autouse=True)
    def _torch(self):
        # Per test, not at class level: a missing torch must skip only these.
        self.torch = pytest.importorskip("torch")

    def _torch_lrs(self, make_scheduler, steps, lr=0.5, momentum=0.0):
        torch = self.torch
        param = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([param], lr=lr, momentum=momentum)
        sched = make_scheduler(opt)
        lrs, moms = [], []
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            moms.append(opt.param_groups[0]["momentum"])
            opt.step()
            sched.step()
        return lrs, moms

    def test_step_multistep_exponential(self):
        lr_s = self.torch.optim.lr_scheduler
        cases = [
            (schedules.StepLR(3, 0.5), lambda o: lr_s.StepLR(o, 3, 0.5)),
            (schedules.MultiStepLR([2, 5, 6], 0.3),
             lambda o: lr_s.MultiStepLR(o, [2, 5, 6], 0.3)),
            (schedules.ExponentialLR(0.9), lambda o: lr_s.ExponentialLR(o, 0.9)),
        ]
        for ours, theirs in cases:
            expected, _ = self._torch_lrs(theirs, 12)
            got = [ours(e, 0.5) for e in range(12)]
            np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=repr(ours))

    def test_cosine_with_warmup(self):
        lr_s = self.torch.optim.lr_scheduler

        def theirs(o):
            warm = lr_s.LinearLR(o, start_factor=1 / 4, end_factor=1.0,
                                 total_iters=3)
            cos = lr_s.CosineAnnealingLR(o, T_max=10, eta_min=0.01)
            return lr_s.SequentialLR(o, [warm, cos], milestones=[4])

        expected, _ = self._torch_lrs(theirs, 14)
        ours = schedules.CosineWithWarmup(4, 14, min_lr=0.01)
        np.testing.assert_allclose([ours(t, 0.5) for t in range(14)], expected,
                                   rtol=1e-9)

    @pytest.mark.parametrize("strategy", ["cos", "linear"])
    def test_one_cycle_lr_and_momentum(self, strategy):
        lr_s = self.torch.optim.lr_scheduler
        expected, moms = self._torch_lrs(
            lambda o: lr_s.OneCycleLR(o, max_lr=0.8, total_steps=20, pct_start=0.25,
                                      anneal_strategy=strategy),
            20, momentum=0.9)
        ours = schedules.OneCycle(0.8, 20, pct_start=0.25, anneal_strategy=strategy)
        np.testing.assert_allclose([ours(t, 123.0) for t in range(20)], expected,
                                   rtol=1e-12)
        np.testing.assert_allclose([ours.momentum(t) for t in range(20)], moms,
                                   rtol=1e-12)
