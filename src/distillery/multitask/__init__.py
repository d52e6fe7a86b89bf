"""MT-DNN knowledge distillation (Liu et al. 2019, "Improving Multi-Task Deep Neural Networks via
Knowledge Distillation for Natural Language Understanding"): per task an ensemble of fine-tuned
teachers gives soft targets (the mean of their probabilities); one multi-task student, a shared
encoder with a head per task, learns from them and from gold labels, tasks mixed by MT-DNN's sampler.

- `ensemble`: average the members' stored logits of one task into its soft-target artifact;
- the multi-task student is a student family (`students/multitask.py`, registered as `mtdnn`);
- `sampler`: batches of one task each, tasks in proportion to their size;
- `export`: one ONNX graph for every task. The student trains through the one recipe (`tasks/multitask.py`);
  the study's table is `evaluate/multitask.py`.
"""
