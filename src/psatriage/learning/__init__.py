"""Learning from corrections: the tenant's labeled examples turned into better decisions.

``versions``  the local engine's trained models per tenant, kept in the database with their
              reports: one active version, promoted, rolled back or refused.
``dataset``   a tenant's training set: closed-ticket history with its labeled examples, the
              examples winning for the same ticket.
``retrain``   scheduled retraining: a candidate scored against the model in use on the same
              held-out slice of recent examples, promoted only when better.
``similar``   the labeled examples most like a ticket, shown to an LLM in its prompt.
"""
