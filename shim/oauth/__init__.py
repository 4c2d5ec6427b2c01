"""The token life: token policy (pure), chains, scheduler, first authorization, alerts, health."""
