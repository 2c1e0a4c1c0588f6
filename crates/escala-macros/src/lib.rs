//! The attributes behind `#[escala::task]` and `#[escala::main]`. Use them through the
//! `escala` crate, which re-exports both.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::{FnArg, GenericArgument, ItemFn, LitStr, PathArguments, ReturnType, Type, parse_macro_input};

/// Registers a function as an escala task.
///
/// The function stays as it is. Beside it, in the type namespace, the attribute adds a
/// descriptor with the same name that implements `escala::Task`, so `name::call(args…)`
/// builds a call any unit can run, and registers it so a re-executed child process finds
/// it. Arguments and the result must be serde types. A return type spelled `Result<T, E>`
/// (with `E: Display`) makes `Err` the task's own failure. `#[escala::task(name = "x")]`
/// sets the registered name (default: `module::path::function`).
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut name: Option<LitStr> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            name = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error("expected `name = \"...\"`"))
        }
    });
    parse_macro_input!(attr with parser);
    let func = parse_macro_input!(item as ItemFn);
    match expand_task(&func, name) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand_task(func: &ItemFn, name: Option<LitStr>) -> syn::Result<proc_macro2::TokenStream> {
    let sig = &func.sig;
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&sig.generics, "an escala task cannot be generic"));
    }
    if let Some(a) = &sig.asyncness {
        return Err(syn::Error::new_spanned(a, "an escala task cannot be async"));
    }
    let ident = &sig.ident;
    let vis = &func.vis;
    let mut types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return Err(syn::Error::new_spanned(r, "an escala task cannot take `self`"));
            }
            FnArg::Typed(t) => types.push((*t.ty).clone()),
        }
    }
    let vars: Vec<_> = (0..types.len()).map(|i| format_ident!("__arg{}", i)).collect();
    let args_ty = match types.len() {
        1 => {
            let t = &types[0];
            quote!(#t)
        }
        _ => quote!((#(#types,)*)),
    };
    let pack = match vars.len() {
        1 => {
            let v = &vars[0];
            quote!(#v)
        }
        _ => quote!((#(#vars,)*)),
    };
    let (output_ty, fallible) = match &sig.output {
        ReturnType::Default => (quote!(()), false),
        ReturnType::Type(_, ty) => match result_ok_type(ty) {
            Some(ok) => (quote!(#ok), true),
            None => (quote!(#ty), false),
        },
    };
    let invoke = if fallible {
        quote!(#ident(#(#vars),*).map_err(|e| e.to_string()))
    } else {
        quote!(::core::result::Result::Ok(#ident(#(#vars),*)))
    };
    let reg_name = match name {
        Some(n) => quote!(#n),
        None => {
            let s = LitStr::new(&format!("::{ident}"), Span::call_site());
            quote!(::core::concat!(::core::module_path!(), #s))
        }
    };
    let doc = format!(
        "The escala task descriptor of [`{ident}()`]: `{ident}::call(…)` builds a call to run on any unit."
    );
    Ok(quote! {
        #func

        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}

        impl ::escala::Task for #ident {
            const NAME: &'static str = #reg_name;
            type Args = #args_ty;
            type Output = #output_ty;
            fn run(args: Self::Args) -> ::core::result::Result<Self::Output, ::std::string::String> {
                let #pack = args;
                #invoke
            }
        }

        impl #ident {
            /// Builds a call of this task with these arguments; nothing runs until a unit gets it.
            #[allow(dead_code)]
            #vis fn call(#(#vars: #types),*) -> ::escala::Call<#ident> {
                ::escala::Call::new(#pack)
            }
        }

        ::escala::__private::inventory::submit! {
            ::escala::__private::Registration::new::<#ident>()
        }
    })
}

/// `Some(T)` when `ty` is spelled `Result<T, E>` (any path ending in `Result` with two
/// type arguments).
fn result_ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    let ok = types.next()?;
    types.next()?;
    Some(ok)
}

/// Makes `main` an escala program: calls `escala::init()` first (so a re-executed child runs
/// its task instead of `main`) and applies the exit policy when `main` returns —
/// non-daemon units are joined, daemon units are asked to stop.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(Span::call_site(), "#[escala::main] takes no arguments")
            .to_compile_error()
            .into();
    }
    let mut func = parse_macro_input!(item as ItemFn);
    let stmt: syn::Stmt = syn::parse_quote! {
        let __escala_exit_guard = ::escala::init();
    };
    func.block.stmts.insert(0, stmt);
    quote!(#func).into()
}
