"""Streamlit web chat over the Triton service (`glmtrt ui`); the model never lives in this process."""
