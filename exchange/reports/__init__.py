"""Reports: referral reporting, directory statistics, charts and the DPO's queries, over the other areas' tables."""
