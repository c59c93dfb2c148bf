import type { AuthProviderFactory } from './types.js'

/**
 * Provider factories, asked in order for each auth scope (global, or each listener with per_listener_settings).
 * A factory returns undefined when its options are not set for that scope.
 * The security work adds: password_file, acl_file, auth_plugin.
 */
export const authProviderFactories: AuthProviderFactory[] = []

export type { AuthProvider, AuthProviderFactory, AuthResult } from './types.js'
