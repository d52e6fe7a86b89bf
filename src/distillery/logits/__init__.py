"""The teacher-logit cache: raw fp16 logits keyed by example id, fingerprinted by teacher."""
