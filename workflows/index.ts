// The worker's workflow entry point: every workflow the worker registers is exported here.
export * from './connectivity';
export * from './lifecycle';
export * from './reservation';
export * from './sweeper';
export * from './purchase';
export * from './topup';
export * from './refund';
export * from './webhooks';
export * from './reconcile';
export * from './housekeeping';
