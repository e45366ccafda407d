"""OpenAI-compatible HTTP endpoint over the Triton service (`glmtrt openai`).

A thin front: requests are translated to the ensemble / BLS tensors and sent to Triton over
the asyncio gRPC client; the model never lives in this process.
"""
