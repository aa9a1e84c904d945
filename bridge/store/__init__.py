from bridge.store.models import Conversation, Customer, ToCustomer, ToHelpdesk
from bridge.store.schema import SchemaTooNew, downgrade, upgrade
from bridge.store.store import Store, make_engine

__all__ = ["Conversation", "Customer", "Store", "SchemaTooNew", "ToCustomer", "ToHelpdesk",
           "downgrade", "make_engine", "upgrade"]
