//! Running a closure as another role, the way PostgreSQL runs a `SECURITY DEFINER` function or
//! a maintenance command: the role's privileges are checked, the operation is marked
//! security-restricted (no temp tables, no `SET ROLE`), and `search_path` is pinned to
//! PostgreSQL's default with the temporary schema moved last (`"$user", public, pg_temp`): the
//! calling session's own `search_path` and its temporary tables cannot change what a name in
//! the closure, or in the owner's triggers it fires, refers to, while triggers written for the
//! default path keep working.
//!
//! The settings by which any role can make the server print a query's plan or parse tree
//! (`debug_print_plan` and its siblings) are turned off for the closure: a custom plan holds the
//! statement's parameters as constants, and the flush's parameters are tokens a loader must not
//! see.

use super::relation::Oid;
use pgrx::pg_sys;

/// The settings the closure runs with. `pg_catalog` is searched first implicitly, and
/// temporary relations only after `public`; functions are never looked up in `pg_temp`.
const PINNED: [(&std::ffi::CStr, &std::ffi::CStr); 4] = [
    (c"search_path", c"\"$user\", public, pg_temp"),
    (c"debug_print_parse", c"off"),
    (c"debug_print_rewritten", c"off"),
    (c"debug_print_plan", c"off"),
];

/// Runs `f` as `role`. If `f` raises, the (sub)transaction abort restores the calling role and
/// `search_path`, as it does for a `SECURITY DEFINER` function; on success they are restored
/// here.
pub fn as_role<R>(role: Oid, f: impl FnOnce() -> R) -> R {
    let mut saved_role = pg_sys::InvalidOid;
    let mut saved_context = 0;
    // SAFETY: the same calls fmgr_security_definer makes, inside a transaction.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_role, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            role,
            saved_context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
    }
    let result = with_settings(&PINNED, f);
    // SAFETY: restores the role saved above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_role, saved_context) };
    result
}

/// Runs `f` with `settings` in force, as `SET LOCAL` in a function's own scope would have them:
/// restored when `f` returns, and by the (sub)transaction abort if it raises.
pub fn with_settings<R>(
    settings: &[(&std::ffi::CStr, &std::ffi::CStr)],
    f: impl FnOnce() -> R,
) -> R {
    // SAFETY: the calls fmgr_security_definer makes for a function's `SET` clause, inside a
    // transaction; the level pushed here is popped below or by the abort.
    let nest_level = unsafe {
        let nest_level = pg_sys::NewGUCNestLevel();
        for (name, value) in settings {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        nest_level
    };
    let result = f();
    // SAFETY: pops exactly the GUC level pushed above.
    unsafe { pg_sys::AtEOXact_GUC(true, nest_level) };
    result
}
