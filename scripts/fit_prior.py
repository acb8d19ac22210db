"""Fit the bundled TinyPerson prior to TinyPerson's published size statistics (issue 18).

    python scripts/fit_prior.py

TinyPerson (Yu et al., WACV 2020) publishes, for the absolute size s = sqrt(w*h)
of its persons: median about 13 px, about 20 % under 8 px, mean 18.0, std 17.4.
A log-normal law has two parameters and cannot meet all four (with the mean and
std it puts 28 % under 8 px). A shifted log-normal (three parameters: sigma,
shift, scale) is fitted here by least squares on the relative errors of the four
statistics; the result is smplus.histogram.TINYPERSON_PRIOR. Prints a Markdown
table of target vs achieved for both laws.
"""

import math

import numpy as np
from scipy.optimize import minimize
from scipy.stats import lognorm

TARGET = {"median": 13.0, "share under 8 px": 0.20, "mean": 18.0, "std": 17.4}


def statistics(law):
    mean, var = law.stats("mv")
    return {"median": float(law.median()), "share under 8 px": float(law.cdf(8.0)),
            "mean": float(mean), "std": float(math.sqrt(var))}


def loss(law):
    got = statistics(law)
    return sum(((got[k] - v) / v) ** 2 for k, v in TARGET.items())


def fit():
    def objective(p):
        sigma, shift, scale = p
        return 1e9 if sigma <= 0 or scale <= 0 or shift < 0 else loss(lognorm(s=sigma, loc=shift, scale=scale))

    best = minimize(objective, [0.8, 0.0, 13.0], method="Nelder-Mead",
                    options={"xatol": 1e-9, "fatol": 1e-14, "maxiter": 10000})
    return tuple(float(v) for v in best.x)


def main():
    from smplus.histogram import TINYPERSON_PRIOR

    sigma, shift, scale = fit()
    print(f"fitted: sigma {sigma:.4f}, shift {shift:.4f} px, scale {scale:.4f} px "
          f"(bundled: {', '.join(f'{v:.4f}' for v in TINYPERSON_PRIOR)})")
    s0 = math.sqrt(math.log(1.0 + (17.4 / 18.0) ** 2))
    old = statistics(lognorm(s=s0, scale=18.0 * math.exp(-s0 ** 2 / 2)))
    new = statistics(lognorm(s=TINYPERSON_PRIOR[0], loc=TINYPERSON_PRIOR[1], scale=TINYPERSON_PRIOR[2]))
    print()
    print("| statistic | TinyPerson (published) | log-normal, mean and std (before) | shifted log-normal (bundled) |")
    print("|---|---|---|---|")
    for k, v in TARGET.items():
        fmt = (lambda x: f"{100 * x:.1f} %") if k.startswith("share") else (lambda x: f"{x:.2f} px")
        print(f"| {k} | {fmt(v)} | {fmt(old[k])} | {fmt(new[k])} |")
    law = lognorm(s=TINYPERSON_PRIOR[0], loc=TINYPERSON_PRIOR[1], scale=TINYPERSON_PRIOR[2])
    print()
    print(f"bundled law: no size under {TINYPERSON_PRIOR[1]:.2f} px; 1 % / 99 % quantiles "
          f"{law.ppf(0.01):.2f} / {law.ppf(0.99):.2f} px; share under 4.5 px {100 * law.cdf(4.5):.2f} %")
    from smplus.histogram import tinyperson_histogram

    h = tinyperson_histogram()  # what runs draw from: 100 bins, 1 % rectified into each end bin
    draws = h.quantile((np.arange(100000) + 0.5) / 100000)
    print(f"bundled histogram (100 bins, default except rate): median {np.median(draws):.2f} px, "
          f"{100 * np.mean(draws < 8):.1f} % under 8 px, mean {draws.mean():.2f}, std {draws.std():.2f} "
          f"(its tail bin spreads the top 1 % uniformly up to {h.edges[-1]:.0f} px)")
    assert np.allclose(fit(), TINYPERSON_PRIOR, rtol=1e-3), "TINYPERSON_PRIOR is not this script's fit"


if __name__ == "__main__":
    main()
