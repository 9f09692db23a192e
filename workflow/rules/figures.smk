# Study section 7: the 11 figures, one rule each, all drawn by mlpstudy.figures.draw.
# Per-backend figures read only that backend's table, so asking for one never trains
# another backend; cross-backend figures read the combined tables.


rule figure_speed_accuracy:
    input:
        runs="results/tables/runs_{backend}.csv",
    output:
        png=report(
            "results/figures/speed_accuracy_{backend}.png",
            caption="../report/speed_accuracy.rst",
            category="Figures",
            subcategory="1-2 Speed vs accuracy",
            labels={"figure": "speed vs accuracy", "backend": "{backend}"},
        ),
    log:
        "logs/figures/speed_accuracy_{backend}.log",
    conda:
        ENV
    params:
        figure="speed_accuracy",
        backend="{backend}",
    script:
        "../scripts/plot_figure.py"


rule figure_accuracy_vs_batch_size:
    input:
        runs="results/tf_vs_np.csv",
    output:
        png=report(
            "results/figures/accuracy_vs_batch_size.png",
            caption="../report/accuracy_vs_batch_size.rst",
            category="Figures",
            subcategory="3-4 Accuracy vs hyperparameters",
            labels={"figure": "accuracy vs batch size", "backend": "all"},
        ),
    log:
        "logs/figures/accuracy_vs_batch_size.log",
    conda:
        ENV
    params:
        figure="accuracy_vs_batch_size",
    script:
        "../scripts/plot_figure.py"


rule figure_accuracy_vs_learning_rate:
    input:
        runs="results/tf_vs_np.csv",
    output:
        png=report(
            "results/figures/accuracy_vs_learning_rate.png",
            caption="../report/accuracy_vs_learning_rate.rst",
            category="Figures",
            subcategory="3-4 Accuracy vs hyperparameters",
            labels={"figure": "accuracy vs learning rate", "backend": "all"},
        ),
    log:
        "logs/figures/accuracy_vs_learning_rate.log",
    conda:
        ENV
    params:
        figure="accuracy_vs_learning_rate",
    script:
        "../scripts/plot_figure.py"


rule figure_time_vs_batch_size:
    input:
        runs="results/tf_vs_np.csv",
    output:
        png=report(
            "results/figures/time_vs_batch_size.png",
            caption="../report/time_vs_batch_size.rst",
            category="Figures",
            subcategory="5-6 Training time vs hyperparameters",
            labels={"figure": "training time vs batch size", "backend": "all"},
        ),
    log:
        "logs/figures/time_vs_batch_size.log",
    conda:
        ENV
    params:
        figure="time_vs_batch_size",
    script:
        "../scripts/plot_figure.py"


rule figure_time_vs_learning_rate:
    input:
        runs="results/tf_vs_np.csv",
    output:
        png=report(
            "results/figures/time_vs_learning_rate.png",
            caption="../report/time_vs_learning_rate.rst",
            category="Figures",
            subcategory="5-6 Training time vs hyperparameters",
            labels={"figure": "training time vs learning rate", "backend": "all"},
        ),
    log:
        "logs/figures/time_vs_learning_rate.log",
    conda:
        ENV
    params:
        figure="time_vs_learning_rate",
    script:
        "../scripts/plot_figure.py"


rule figure_accuracy_heatmap:
    input:
        runs="results/tables/runs_{backend}.csv",
    output:
        png=report(
            "results/figures/accuracy_heatmap_{backend}.png",
            caption="../report/accuracy_heatmap.rst",
            category="Figures",
            subcategory="7-10 Heatmaps",
            labels={"figure": "test accuracy heatmap", "backend": "{backend}"},
        ),
    log:
        "logs/figures/accuracy_heatmap_{backend}.log",
    conda:
        ENV
    params:
        figure="accuracy_heatmap",
        backend="{backend}",
    script:
        "../scripts/plot_figure.py"


rule figure_time_heatmap:
    input:
        runs="results/tables/runs_{backend}.csv",
    output:
        png=report(
            "results/figures/time_heatmap_{backend}.png",
            caption="../report/time_heatmap.rst",
            category="Figures",
            subcategory="7-10 Heatmaps",
            labels={"figure": "training time heatmap", "backend": "{backend}"},
        ),
    log:
        "logs/figures/time_heatmap_{backend}.log",
    conda:
        ENV
    params:
        figure="time_heatmap",
        backend="{backend}",
    script:
        "../scripts/plot_figure.py"


rule figure_loss_curves:
    input:
        histories="results/histories.parquet",
    output:
        png=report(
            "results/figures/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="Figures",
            subcategory="11 Loss curves",
            labels={"figure": "training loss curves", "backend": "all"},
        ),
    log:
        "logs/figures/loss_curves.log",
    conda:
        ENV
    params:
        figure="loss_curves",
    script:
        "../scripts/plot_figure.py"
