import type { AuthProviderFactory } from './types.js'
import { passwordFileFactory } from './password-file.js'
import { aclFileFactory } from './acl-file.js'
import { authPluginFactory } from './plugin.js'

/**
 * Provider factories, asked in order for each auth scope (global, or each listener with per_listener_settings).
 * A factory returns undefined when its options are not set for that scope. The order is mosquitto 2.0's:
 * the password and ACL files first, then `auth_plugin` modules, which are asked when the files defer
 * (a user not in the password file, a topic no ACL rule grants or denies).
 */
export const authProviderFactories: AuthProviderFactory[] = [passwordFileFactory, aclFileFactory, authPluginFactory]

export type { AuthProvider, AuthProviderFactory, AuthResult } from './types.js'
