"""`distillery predict`: a trained model (a student, its export, or the teacher) labels a user's file."""
