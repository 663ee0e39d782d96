"""scikit-learn's training procedures for the MLP, run by gpubp's network.

* ``sgd`` and ``adam``: gpubp's own :meth:`gpubp.MLP.fit` (its mini-batches, shuffling,
  divergence guard and device-resident data), with scikit-learn's bookkeeping in its
  end-of-epoch callback: ``loss_curve_`` and ``t_``, the ``tol`` / ``n_iter_no_change``
  stopping rule on the training loss or, with ``early_stopping``, on the score of a held-out
  ``validation_fraction`` (whose best weights are put back at the end), the ``invscaling`` and
  ``adaptive`` learning rates of SGD, ``verbose`` lines and the ConvergenceWarning;
* ``lbfgs``: SciPy's L-BFGS-B on the full-batch loss and gradient of
  :meth:`gpubp.MLP.loss_and_grads` (of a sparse X: :func:`gpubp.steps.sparse_full_batch`, over its
  rows in densified chunks).

The network's loss is ``scale`` times scikit-learn's objective J (1 for the classifiers, 2 for
the regressor, whose sse is twice scikit-learn's half squared error): SGD runs at rate
eta / scale and Adam with epsilon scale * eps (as epsilon-hat, scikit-learn's placement), so
both take scikit-learn's steps; the losses reported are C / scale = J.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Tuple

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from .. import sparse, validation
from ..validation import COUNTER_LIMIT
from ..errors import NonFiniteError
from ..optim import OPTIMIZERS, SGD, Adam
from ..steps import sparse_full_batch

NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large values and need to "
              "be preprocessed.")


class LearningRate:
    """scikit-learn's SGDOptimizer / AdamOptimizer (their schedules and stopping) over a gpubp optimizer.

    ``learning_rate`` is scikit-learn's current rate. gpubp's SGD keeps its velocity in gradient
    units (v <- mu v + g, w <- w - eta v, PyTorch's form) where scikit-learn keeps the step
    (v <- mu v - eta g, w <- w + v): the two agree step for step while eta is constant, and a
    change of eta rescales gpubp's velocity by eta_old / eta_new so that they still do.
    """

    def __init__(self, est: Any):
        self.scale = float(est._loss_scale)
        self.sgd = est.solver == "sgd"
        self.schedule = est.learning_rate if self.sgd else "constant"
        self.init = float(est.learning_rate_init)
        self.power_t = float(est.power_t)
        self.learning_rate = self.init
        if self.sgd:
            self.optimizer: Any = SGD(self.init / self.scale, momentum=float(est.momentum),
                                      nesterov=bool(est.nesterovs_momentum) and est.momentum > 0)
        else:
            self.optimizer = Adam(self.init, betas=(float(est.beta_1), float(est.beta_2)),
                                  eps=float(est.epsilon) * self.scale, eps_hat=True)

    def _set(self, learning_rate: float) -> None:
        if self.sgd:
            velocity = self.optimizer.state.get("velocity")
            if velocity is not None:
                velocity *= self.learning_rate / learning_rate
            self.optimizer.lr = learning_rate / self.scale
        self.learning_rate = learning_rate

    def iteration_ends(self, time_step: int) -> None:
        """After an epoch: ``invscaling`` sets eta = learning_rate_init / (t + 1)^power_t."""
        if self.schedule == "invscaling":
            self._set(self.init / (time_step + 1) ** self.power_t)

    def trigger_stopping(self, msg: str, verbose: Any) -> bool:
        """No improvement for n_iter_no_change epochs: stop, or (``adaptive``) divide eta by 5."""
        if self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._set(self.learning_rate / 5.0)
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False

    # pickled with the optimizer's state as NumPy arrays; attach() puts it on the network's backend
    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        opt = self.optimizer
        state["optimizer"] = (type(opt).__name__, opt.get_config(), opt.state_dict())
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        name, config, saved = state["optimizer"]
        if "betas" in config:
            config = dict(config, betas=tuple(config["betas"]))
        opt = OPTIMIZERS[name.lower()](**config)
        opt.t = int(saved["t"])
        opt.state = {k: np.array(v) for k, v in saved["state"].items()}
        self.__dict__.update(state, optimizer=opt)

    def attach(self, net: Any) -> None:
        """Move the optimizer's state onto ``net``'s backend (after unpickling)."""
        if self.optimizer.state:
            self.optimizer.load_state_dict(self.optimizer.state_dict(), net)


def batch_size(requested: Any, n_samples: int) -> int:
    """``auto`` is min(200, n); a size beyond n is clipped to n with a warning, as scikit-learn does."""
    if requested == "auto":
        return min(200, n_samples)
    if requested > n_samples:
        # stacklevel: the caller of fit / partial_fit (through _fit and fit_stochastic)
        warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped", stacklevel=5)
    return int(np.clip(requested, 1, n_samples))


def fit_stochastic(est: Any, run: Any, incremental: bool) -> None:
    """scikit-learn's ``_fit_stochastic``: epochs until max_iter or the stopping rule (module docstring).

    One call of ``MLP.fit`` runs every epoch; its callback does scikit-learn's bookkeeping after
    each, sets the next epoch's learning rate and ends training (``net.stop_training``).
    """
    net, solver = est.network_, est._solver
    size = batch_size(est.batch_size, run.n_samples)
    stopped = [False]

    def epoch_end(epoch: int, logs: Dict[str, Any]) -> None:
        est.n_iter_ += 1
        est.loss_ = logs["loss"] / solver.scale
        est.t_ += run.n_samples
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))
        _update_no_improvement_count(est, run.val)
        solver.iteration_ends(est.t_)
        if est._no_improvement_count > est.n_iter_no_change:
            if est.early_stopping:
                msg = ("Validation score did not improve more than tol=%f for %d consecutive epochs."
                       % (est.tol, est.n_iter_no_change))
            else:
                msg = ("Training loss did not improve more than tol=%f for %d consecutive epochs."
                       % (est.tol, est.n_iter_no_change))
            if solver.trigger_stopping(msg, est.verbose):
                stopped[0] = net.stop_training = True
                return
            est._no_improvement_count = 0

    try:
        est.n_iter_ = 0
        try:
            # epochs as far as max_iter, within what a network counts (the tol rule ends long before)
            epochs = min(net.epoch + (1 if incremental else est.max_iter), COUNTER_LIMIT - 1)
            net.fit(run.X, run.Y, epochs=epochs, initial_epoch=net.epoch,
                    batch_size=size, optimizer=solver.optimizer, shuffle=bool(est.shuffle), verbose=0,
                    callback=epoch_end)
        except NonFiniteError as exc:
            raise ValueError(NON_FINITE) from exc
        if not incremental and not stopped[0] and est.n_iter_ == est.max_iter:
            warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization hasn't "
                          "converged yet." % est.max_iter, ConvergenceWarning, stacklevel=4)
    except KeyboardInterrupt:  # MLP.fit has put back the weights of the last whole step
        warnings.warn("Training interrupted by user.", stacklevel=4)
    if est.early_stopping:  # the best weights seen on the validation set
        net.backend.xp.copyto(net.params, est._best_params)


def _update_no_improvement_count(est: Any, val: Optional[Tuple[Any, np.ndarray]]) -> None:
    """Count the epochs without an improvement by ``tol``: of the validation score with early
    stopping (keeping the best weights), else of the training loss."""
    if val is not None:
        score = est._score(*val)
        est.validation_scores_.append(score)
        if est.verbose:
            print("Validation score: %f" % score)
        if score < est.best_validation_score_ + est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if score > est.best_validation_score_:
            est.best_validation_score_ = score
            est.network_.backend.xp.copyto(est._best_params, est.network_.params)
    else:
        if est.loss_curve_[-1] > est.best_loss_ - est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if est.loss_curve_[-1] < est.best_loss_:
            est.best_loss_ = est.loss_curve_[-1]


def fit_lbfgs(est: Any, run: Any) -> None:
    """L-BFGS-B (SciPy) on J(w) = C(w) / scale over all rows at once; stops at ``max_iter``
    iterations, ``max_fun`` evaluations or a projected gradient below ``tol``."""
    net = est.network_
    backend, scale = net.backend, float(est._loss_scale)

    if sparse.is_sparse(run.X):  # checked once; every evaluation then goes over its rows in chunks
        X, Y = validation.check_XY(net, run.X, run.Y, keep_sparse=True)

    def loss_and_grad(w: np.ndarray) -> Tuple[float, np.ndarray]:
        net.params[...] = backend.asarray(w, dtype=net.dtype)
        if sparse.is_sparse(run.X):
            C = float(sparse_full_batch(net, X, Y))
        else:
            C, _ = net.loss_and_grads(run.X, run.Y)
        return C / scale, backend.to_numpy(net.grads).astype(np.float64) / scale

    def report(intermediate_result: Any) -> None:
        print("Iteration %d, loss = %.8f" % (report.iterations + 1, intermediate_result.fun))
        report.iterations += 1

    report.iterations = 0  # type: ignore[attr-defined]
    result = scipy.optimize.minimize(loss_and_grad, backend.to_numpy(net.params).astype(np.float64), method="L-BFGS-B",
                                     jac=True, callback=report if est.verbose else None,
                                     options={"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": est.tol})
    if result.status != 0:
        message = result.message.decode("latin1") if isinstance(result.message, bytes) else result.message
        warnings.warn(f"lbfgs failed to converge after {result.nit} iteration(s) (status={result.status}): {message}. "
                      f"Increase the number of iterations (max_iter={est.max_iter}) or scale the data.",
                      ConvergenceWarning, stacklevel=4)
    est.n_iter_ = min(int(result.nit), est.max_iter)
    est.loss_ = float(result.fun)
    net.params[...] = backend.asarray(result.x, dtype=net.dtype)
