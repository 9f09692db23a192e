"""The statistics' headline settings, kept free of heavy imports.

The workflow reads them at parse time (``stats.smk`` passes them as ``params:``, so
changing one reruns the statistics), which must not cost a SciPy import per job.
"""

ALPHA = 0.05
CONFIDENCE = 0.95
CORRECTION = "holm"  # or "bh" (Benjamini-Hochberg, scipy.stats.false_discovery_control)
# claim 3: accuracies within 1 percentage point count as "nearly identical"
ACCURACY_MARGIN = 0.01
# The study's two backends; the first is the reference every other backend is compared with
# (claims, the other-backends section, the whole-grid models)
STUDY_BACKENDS = ("numpy", "tensorflow")
REFERENCE = STUDY_BACKENDS[0]
