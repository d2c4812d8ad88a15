"""Deploying a model to a fleet: the signed order that carries a model (order), the device's
store of models that survives a power cut at any moment (model_store), the contract a new
model must meet before it runs (contract), the device's figures and health gate (health),
the device's agent that installs, tries and keeps or rolls back (agent), and the operator's
rollout over the fleet (rollout). It knows no command line: cli_deploy drives it."""

MAY_IMPORT = ("fer_edge.core", "fer_edge.model", "fer_edge.vision", "fer_edge.outputs")
NEVER_IMPORT = ("click",)
