"""Every bound of the package in the configurations the configs use (fresh instances: MINE and the
probabilistic classifier keep state). Shared by the stress and fuzz tests. A key that names a
fragment of ``configs/mi/bounds/`` is that estimator's one key (fragment, report row, run directory);
the other keys are extra configurations of the same classes."""

from __future__ import annotations

from typing import Callable

from pdlightning.bounds import (
    CLUB,
    DV,
    FDIME,
    JS,
    MINE,
    NWJ,
    SMILE,
    TRE,
    TUBA,
    Bound,
    DensityMatchingI,
    DensityMatchingII,
    DensityRatioFitting,
    EtaDV,
    InfoNCE,
    L1Out,
    ProbabilisticClassifier,
    Regularized,
    VariationalPlugIn,
)

BOUNDS: dict[str, Callable[[], Bound]] = {
    "nwj": NWJ,
    "tuba": TUBA,
    "tuba_learned": lambda: TUBA(log_a=0.5, learn_log_a=True),
    "dv": DV,
    "mine": MINE,
    "js": JS,
    "infonce": InfoNCE,
    "smile_tau5": SMILE,
    "smile_tau1": lambda: SMILE(tau=1.0),
    "smile_tauinf": lambda: SMILE(tau=None),
    "eta_dv": EtaDV,
    "eta_mine_bcd": EtaDV,  # eta-DV under block-coordinate descent (a module setting of its fragment)
    "pd_variational": VariationalPlugIn,
    "pd_classifier": ProbabilisticClassifier,
    "pd_classifier_balanced": lambda: ProbabilisticClassifier(balanced=True),
    "pd_classifier_log_ratio": lambda: ProbabilisticClassifier(parametrization="log_ratio"),
    "pd_ratio_fitting": DensityRatioFitting,
    "pd_ratio_fitting_relative": lambda: DensityRatioFitting(alpha=0.5),
    "pd_ratio_fitting_exp": lambda: DensityRatioFitting(link="exp"),
    "pd_ratio_fitting_softplus": lambda: DensityRatioFitting(link="softplus"),
    "pd_matching_1": DensityMatchingI,
    "pd_matching_2": DensityMatchingII,
    "remine": lambda: Regularized(DV()),
    "renwj": lambda: Regularized(NWJ(), distance="log_euclidean"),
    "resmile": lambda: Regularized(SMILE()),
    "reinfonce": lambda: Regularized(InfoNCE()),
    "retuba": lambda: Regularized(TUBA(), distance="log_euclidean"),
    "rejs": lambda: Regularized(JS(), distance="log_euclidean"),
    "re_eta_dv": lambda: Regularized(EtaDV(), distance="log_euclidean"),
    "fdime_kl": lambda: FDIME("kl"),
    "fdime_gan": lambda: FDIME("gan"),
    "fdime_hd": lambda: FDIME("hd"),
    "tre": TRE,
    "club": CLUB,
    "l1out": L1Out,
}

#: bounds whose every term is a log-domain quantity (logsumexp / softplus / plug-in log r): finite
#: for any finite scores, even at |f| = 1e4.
LOG_DOMAIN = {
    "dv",
    "mine",
    "infonce",
    "smile_tau5",
    "smile_tau1",
    "smile_tauinf",
    "pd_variational",
    "pd_classifier",
    "pd_classifier_balanced",
    "pd_ratio_fitting",
    "pd_ratio_fitting_relative",
    "pd_ratio_fitting_softplus",
    "pd_matching_2",
    "remine",
    "resmile",
    "reinfonce",
    "fdime_gan",
    "tre",
    "club",
    "l1out",
}

#: bounds whose training objective reads the joint scores only: the likelihood of the joint pairs (CLUB, L1Out fit
#: q(y|x) by maximum likelihood) or nothing (TRE trains through its critic's bridge loss); the marginal scores get
#: no gradient.
JOINT_ONLY_OBJECTIVE = {"club", "l1out", "tre"}
#: bounds that need the in-batch score matrix (L1Out normalises each y over the batch's other x): explicit marginal
#: pairs are a ValueError unless they have the matrix's shape, k = n - 1 per row.
MATRIX_ONLY = {"l1out"}
