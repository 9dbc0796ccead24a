-- The amount an item's metered entitlement was provisioned with: its own issue_after_reset plus those of
-- the other items of the same feature running now (an add-on's extra quota), so that a change of what
-- runs is seen and the entitlement replaced. NULL: not metered, or provisioned before this column, when
-- it was always the item's own amount.
ALTER TABLE subscription_entitlements ADD COLUMN issue_after_reset numeric;
