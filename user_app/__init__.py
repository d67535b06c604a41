"""The user web API: stateless, holds the placement and 2PC logic (reference design: "The main logic
resides in the User component to leverage horizontal scalability")."""
