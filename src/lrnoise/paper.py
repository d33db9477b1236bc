"""The paper's published numbers (Fagbohungbe & Qian), as fractions, for comparison with ours.

Table II and III print the third learning rate as 0.000725; the text, Section II-C and the figures all say
0.00075, so the printed column is mapped to 0.00075 here.
"""

PRINTED_LRS = (0.0005, 0.000625, 0.000725, 0.001, 0.00125, 0.0015)
TYPOS = {0.000725: 0.00075}
LRS = tuple(TYPOS.get(lr, lr) for lr in PRINTED_LRS)  # the learning rates actually used
DATASETS = ("cifar10", "cifar100")
MODELS = ("resnet20", "resnet32", "resnet44", "resnet56")
ETAS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4)
OPTIMIZER_STUDY = {"dataset": "cifar10", "model": "resnet20", "lr": 0.00075}  # Figure 3's configuration


def _table(rows: dict) -> dict:
    """{dataset: {model: [6 percentages]}} -> {(dataset, model, lr): fraction}."""
    return {
        (dataset, model, lr): round(value / 100, 8)
        for dataset, models in rows.items()
        for model, values in models.items()
        for lr, value in zip(LRS, values)
    }


# Table II: baseline (clean) test accuracy, Adam.
BASELINE_ACCURACY = _table(
    {
        "cifar10": {
            "resnet20": (91.11, 91.39, 91.87, 91.27, 91.53, 91.49),
            "resnet32": (91.51, 92.13, 91.18, 91.72, 89.471, 91.54),
            "resnet44": (92.11, 92.63, 92.26, 92.24, 91.62, 91.23),
            "resnet56": (92.24, 92.62, 92.39, 91.94, 91.75, 91.72),
        },
        "cifar100": {
            "resnet20": (65.22, 66.05, 66.79, 66.89, 67.37, 68.37),
            "resnet32": (67.78, 68.27, 68.60, 69.39, 68.70, 67.68),
            "resnet44": (68.69, 69.36, 70.07, 69.38, 69.57, 68.77),
            "resnet56": (69.10, 69.93, 70.01, 69.79, 69.82, 68.79),
        },
    }
)

# Table III: average normalised accuracy A_avr (eq. 9), Adam.
AVG_NORMALIZED_ACCURACY = _table(
    {
        "cifar10": {
            "resnet20": (72.28, 71.93, 71.57, 68.15, 60.87, 55.26),
            "resnet32": (74.36, 75.53, 68.90, 60.67, 53.72, 38.48),
            "resnet44": (71.80, 72.61, 65.09, 35.23, 43.93, 30.48),
            "resnet56": (72.67, 62.81, 59.81, 42.24, 26.47, 25.93),
        },
        "cifar100": {
            "resnet20": (51.77, 53.81, 52.50, 53.30, 45.50, 41.36),
            "resnet32": (54.02, 55.60, 53.87, 39.11, 32.14, 17.84),
            "resnet44": (57.52, 56.97, 55.20, 24.79, 17.67, 14.17),
            "resnet56": (58.83, 55.38, 39.45, 25.83, 3.67, 15.67),
        },
    }
)

# Section III-3 text: ResNet20 normalised accuracy at eta = 10 % (Figure 4's right axis).
NORMALIZED_ACCURACY_ETA_10 = _table(
    {
        "cifar10": {"resnet20": (95.93, 96.17, 94.78, 85.35, 84.93, 80.52)},
        "cifar100": {"resnet20": (76.55, 81.26, 79.43, 83.33, 58.78, 52.48)},
    }
)

# Section III-4 text (Figure 3): ResNet20 / CIFAR10 / lr 0.00075 with each optimizer.
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "nadam", "adamax")
OPTIMIZER_BASELINE_ACCURACY = dict(zip(OPTIMIZERS, (0.6851, 0.8709, 0.8665, 0.9187, 0.9157, 0.8947)))
OPTIMIZER_AVG_NORMALIZED_ACCURACY = dict(zip(OPTIMIZERS, (0.52, 0.60, 0.60, 0.72, 0.70, 0.68)))
