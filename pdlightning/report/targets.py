"""Published bias / variance / MSE per MI level (batch 64, joint critic, MI 2-4-6-8-10 nats).

Song & Ermon, "Understanding the Limitations of Variational Mutual Information Estimators"
(ICLR 2020), Table 2 (Gaussian and Cubic; biases are absolute values), and ReMINE with lambda = 1 on the
Gaussian task (Choi & Lee, "Combating the Instability of Mutual Information-based Losses via
Regularization", UAI 2022: the lambda = 1 run of their public benchmark code, which the paper shows
as a figure, not a table). Keys are the report's estimator keys (the fragment names).
"""

from __future__ import annotations

__all__ = ["TABLE2_LEVELS", "TABLE2", "PUBLISHED_CRITIC"]

TABLE2_LEVELS = (2.0, 4.0, 6.0, 8.0, 10.0)
#: the critic the published cells were measured with: only our cells of this critic are compared with them
PUBLISHED_CRITIC = "joint"

#: TABLE2[task][estimator][metric] = values at TABLE2_LEVELS; metric in {"bias", "variance", "mse"}.
TABLE2: dict[str, dict[str, dict[str, tuple[float, ...]]]] = {
    "gaussian": {
        "infonce": {
            "bias": (0.25, 0.99, 2.31, 4.00, 5.89),
            "variance": (0.04, 0.04, 0.02, 0.01, 0.00),
            "mse": (0.10, 1.02, 5.33, 16.00, 34.66),
        },
        "nwj": {
            "bias": (0.12, 0.30, 0.75, 2.30, 2.97),
            "variance": (0.06, 0.22, 1.36, 16.50, 99.0),
            "mse": (0.07, 0.32, 2.19, 33.37, 28.43),
        },
        "smile_tau1": {
            "bias": (0.15, 0.30, 0.32, 0.18, 0.03),
            "variance": (0.05, 0.12, 0.20, 0.28, 0.34),
            "mse": (0.08, 0.21, 0.30, 0.32, 0.31),
        },
        "smile_tau5": {
            "bias": (0.13, 0.11, 0.19, 0.54, 0.86),
            "variance": (0.05, 0.11, 0.19, 0.31, 0.51),
            "mse": (0.07, 0.13, 0.22, 0.57, 1.26),
        },
        "smile_tauinf": {
            "bias": (0.15, 0.21, 0.22, 0.12, 0.22),
            "variance": (0.05, 0.14, 0.36, 0.75, 1.54),
            "mse": (0.08, 0.19, 0.40, 0.76, 1.62),
        },
        "remine": {
            "bias": (0.15, 0.27, 0.50, 0.66, 0.58),
            "variance": (0.11, 0.15, 0.35, 0.69, 1.33),
            "mse": (0.14, 0.22, 0.60, 1.13, 1.67),
        },
    },
    "cubic": {
        "infonce": {
            "bias": (0.72, 1.48, 2.63, 4.20, 5.99),
            "variance": (0.03, 0.04, 0.03, 0.01, 0.01),
            "mse": (0.55, 2.22, 6.95, 17.62, 35.91),
        },
        "nwj": {
            "bias": (0.66, 1.21, 2.04, 3.21, 4.70),
            "variance": (0.04, 0.10, 0.41, 0.93, 3.23),
            "mse": (0.47, 1.55, 4.56, 11.13, 27.00),
        },
        "smile_tau1": {
            "bias": (0.47, 0.77, 1.16, 1.64, 2.16),
            "variance": (0.04, 0.10, 0.14, 0.20, 0.30),
            "mse": (0.26, 0.69, 1.49, 2.90, 4.98),
        },
        "smile_tau5": {
            "bias": (0.71, 1.22, 1.55, 1.84, 2.16),
            "variance": (0.04, 0.07, 0.12, 0.18, 0.26),
            "mse": (0.54, 1.56, 2.53, 3.58, 4.92),
        },
        "smile_tauinf": {
            "bias": (0.71, 1.29, 1.82, 2.35, 2.81),
            "variance": (0.03, 0.12, 0.24, 0.65, 0.94),
            "mse": (0.54, 1.75, 3.55, 6.09, 8.81),
        },
    },
}
