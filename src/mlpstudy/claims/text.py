"""The study's claims as data: each claim's title, section and quotation, and what the start
mode means for the claims about the two backends' agreement and spread."""

TEXT = {
    1: (
        "Accuracy increases with learning rate, in both backends",
        "7.3",
        "Learning rate strongly influences final performance. In both frameworks, higher "
        "learning rates yield markedly higher accuracy.",
    ),
    2: (
        "Accuracy decreases with batch size, most at small learning rates",
        "7.2",
        "Across both frameworks, accuracy tends to decrease as batch size increases, "
        "especially at small learning rates.",
    ),
    3: (
        "For a given hyperparameter pair the implementations reach nearly identical accuracy",
        "7.7 (also 7.2, 7.3)",
        "Accuracy trends aligned closely across frameworks, and for many hyperparameter "
        "pairs the resulting values were nearly identical.",
    ),
    4: (
        "NumPy training time is tightly clustered and insensitive to batch size and learning rate",
        "7.1, 7.4",
        "The NumPy scatter plot exhibits tightly clustered training times (14-17s) [...] "
        "(7.1); NumPy shows almost no dependence on batch size (7.4)",
    ),
    5: (
        "TensorFlow training time falls systematically with batch size; learning rate has "
        "no effect",
        "7.4 (also 7.5)",
        "TensorFlow becomes significantly faster at large batches across all learning "
        "rates. Any apparent effect of learning rate on training time is almost certainly "
        "due to stochastic variations.",
    ),
    6: (
        "At small batch sizes NumPy is faster than TensorFlow",
        "7.4",
        "the large computational overhead created by TensorFlow means that at small batch "
        "sizes, the NumPy models all outperform the TensorFlow equivalent.",
    ),
    7: (
        "TensorFlow is markedly faster at large batch sizes",
        "abstract, 7.7",
        "TensorFlow delivers [...] markedly faster training—particularly at large batch "
        "sizes where kernel-level parallelism is most effective (abstract)",
    ),
    8: (
        "NumPy shows higher variance across trials than TensorFlow",
        "abstract, 7.1, 7.5",
        "The NumPy implementation displays higher variance (abstract); [...] extremely "
        "wide variation in accuracy (66-97%) (7.1); the NumPy implementation (Figure 10) "
        "shows irregular patterns [...] reflecting instability and high variance across "
        "trials (7.5, training time)",
    ),
    9: (
        "TensorFlow's loss curves are smoother and converge slightly faster",
        "7.6, 7.7",
        "TensorFlow loss curves are smoother although not by much (7.6); [...] with "
        "TensorFlow converging slightly more smoothly and quickly (7.7)",
    ),
}

# What the start mode means for the claims about the two backends' agreement and spread
START_NOTES = {
    "shared": (
        "start: shared — both backends start from the same weights and see the same "
        "batches in each trial. This claim then asks whether the implementations compute "
        "the same thing from the same start; the study's backends each drew their own "
        "start (start: independent, compared in results/starts.md when configured)."
    ),
    "independent": (
        "start: independent — each backend draws its own initial weights and batch order, "
        "as in the study: differences include those of the starts."
    ),
}
