"""Accounts, members, plans, subscriptions, credit, redeem codes, prices, account keys, usage.

Services over an ``AsyncSession`` that never commit; see ``README.md`` in this folder.
"""
