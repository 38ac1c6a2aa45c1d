"""Alerting: watchlists, alert decisions, the alert stage, the delivery ledger, channels, Atom feeds.

A package inside ``indexer/`` because it sits on the search store: a watchlist's query runs on the
store, the stage waits for the article to be indexed before it alerts, and the Elasticsearch
watchlist and ledger repositories share the store's cluster and index conventions. It imports the
store port (``indexer.store``) and the contract (``stream``); nothing in ``indexer`` outside this
package imports it.
"""
