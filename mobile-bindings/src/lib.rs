//! UniFFI bindings over client-core land with issue 6.
