"""PNG figures of an evaluation (matplotlib, Agg backend: no display).

matplotlib is imported inside the functions, so importing the library
never selects a backend or needs a display.
"""

import numpy as np

from anpvs_tf import files


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_epsilon(curves, path, title=None, xlabel="eps"):
    """Robust accuracy against eps, one line per model.

    curves: {model name: (eps values, accuracies in [0, 1])}.
    """
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4))
    for name, (values, accuracies) in curves.items():
        axes.plot(values, 100 * np.asarray(accuracies), marker="o",
                  label=name)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("robust accuracy (%)")
    axes.set_ylim(-2, 102)
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title(title or "PGD robust accuracy against eps")
    figure.tight_layout()
    save_figure(figure, path)
    return path


def plot_vulnerability_distribution(models, path, title=None):
    """Histogram of per-unit vulnerability, one panel per gated layer.

    models: {model name: {layer: per-unit vulnerabilities}}. The paper's
    figure comparing AT and ANP-VS: a robust network has more of its
    features near zero distortion.
    """
    plt = pyplot()
    layers = list(next(iter(models.values())))
    figure, axes = plt.subplots(
        1, len(layers), figsize=(3.2 * len(layers), 3.2), squeeze=False)
    for axis, layer in zip(axes[0], layers):
        values = [np.asarray(units[layer]) for units in models.values()]
        top = max(float(v.max()) for v in values) or 1.0
        bins = np.linspace(0.0, top, 30)
        for name, units in zip(models, values):
            axis.hist(units, bins=bins, alpha=0.5, label=name)
        axis.set_title(layer)
        axis.set_xlabel("vulnerability per unit")
    axes[0][0].set_ylabel("units")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(models))
    figure.suptitle(title or "Distribution of feature vulnerability")
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    save_figure(figure, path)
    return path


def plot_training_curve(history, path, title=None):
    """Per epoch: clean and robust accuracy on the monitor slice, and unit
    sparsity (right axis) when the network is gated.

    history: {column of history.csv: [value per epoch]}.
    """
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    epochs = np.asarray(history.get("epoch", []), dtype=float) + 1
    for column, label in (("val_clean_accuracy", "clean (monitor)"),
                          ("val_adv_accuracy", "PGD (monitor)"),
                          ("clean_accuracy", "clean (training)"),
                          ("adv_accuracy", "PGD (training)")):
        if column in history and len(history[column]) == len(epochs):
            axes.plot(epochs, 100 * np.asarray(history[column]),
                      marker="o", label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(-2, 102)
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    if "sparsity" in history and len(history["sparsity"]) == len(epochs):
        right = axes.twinx()
        right.plot(epochs, history["sparsity"], color="black",
                   linestyle="--", label="unit sparsity")
        right.set_ylabel("unit sparsity (%)")
        right.set_ylim(-2, 102)
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    axes.legend(handles, labels, loc="lower right", fontsize="small")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    save_figure(figure, path)


def save_figure(figure, path):
    """Saves a figure atomically as PNG (format from the final name's
    extension) and closes it."""
    with files.atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=120)
    pyplot().close(figure)


def plot_budget_tradeoff(groups, path, title=None, floors=None):
    """Worst case against training work, clean accuracy and unit
    sparsity, coloured by unit sparsity: what a training budget buys each
    method, what robustness costs in clean accuracy and in size, and
    which points were chosen.

    groups: {label: [{"passes", "worst_case_acc", "clean_acc",
    "unit_sparsity", "chosen"}, ...]}, one marker shape per label;
    passes: training work in network passes (a count, where a clock on a
    shared machine swings).
    floors: the limits a choice has to respect, each a dashed line:
    {"passes": at most, "clean_acc": at least, "unit_sparsity": at
    least}, any of them.
    """
    plt = pyplot()
    floors = floors or {}
    panels = (("passes", lambda p: p["passes"] / 1e6,
               "training work, base included (million network passes)"),
              ("clean_acc", lambda p: 100 * p["clean_acc"],
               "validation clean accuracy (%)"),
              ("unit_sparsity", lambda p: p["unit_sparsity"],
               "unit sparsity (%)"))
    figure, all_axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
    scale = None
    for (label, points), marker in zip(groups.items(), "osD^v"):
        for axes, (_, x_of, _) in zip(all_axes, panels):
            scale = axes.scatter(
                [x_of(p) for p in points],
                [100 * p["worst_case_acc"] for p in points],
                c=[p["unit_sparsity"] for p in points], cmap="viridis",
                vmin=0, vmax=100, marker=marker, s=50, edgecolors="k",
                label=label)
            for p in points:
                if p.get("chosen"):
                    axes.scatter([x_of(p)], [100 * p["worst_case_acc"]],
                                 marker=marker, s=220, facecolors="none",
                                 edgecolors="tab:red", linewidths=2)
    # Room below for the legend and on the right for the colour bar.
    figure.subplots_adjust(bottom=0.26, right=0.9, wspace=0.08)
    if scale is not None:
        figure.colorbar(scale, cax=figure.add_axes([0.92, 0.26, 0.012, 0.62]),
                        label="unit sparsity (%)")
    for axes, (key, x_of, xlabel) in zip(all_axes, panels):
        if key in floors:
            # On the panel's own scale (x_of reads only its key).
            axes.axvline(x_of({key: floors[key]}), color="tab:red",
                         ls="--", lw=1, label="the rule's limit")
        axes.set_xlabel(xlabel)
        axes.grid(alpha=0.3)
    all_axes[0].set_ylabel("validation worst case (%)")
    # Each label once, the limit line included.
    legend = {}
    for axes in all_axes:
        legend.update(zip(*reversed(axes.get_legend_handles_labels())))
    figure.legend(legend.values(), legend.keys(), loc="lower center",
                  ncol=len(legend), fontsize="small",
                  title="red ring: chosen", title_fontsize="small")
    figure.suptitle(title or "What a training budget buys")
    save_figure(figure, path)
    return path
