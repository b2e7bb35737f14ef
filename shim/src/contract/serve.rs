//! The ttrpc methods the daemon serves: the task service under both names containerd uses
//! (`containerd.task.v2.Task`, and `containerd.task.v3.Task` for containerd 2.x, whose messages
//! are the same), with Wait answered without holding a thread: the request is parked on the
//! process and its response queued when the process exits.

use std::collections::HashMap;
use std::sync::Arc;

use containerd_shim::api::{WaitRequest, WaitResponse};
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::shim_ttrpc::create_task;
use containerd_shim::protos::ttrpc::{
    self, get_status, response_to_channel, Code, MethodHandler, Request, Response, TtrpcContext,
};

use crate::errors;
use crate::events::timestamp;
use crate::process::{Exit, Parked};
use crate::service::Service;

const V2: &str = "/containerd.task.v2.Task/";
const V3: &str = "/containerd.task.v3.Task/";

/// Every method of the task service, under the v2 and the v3 service name.
pub fn methods(service: Arc<Service>) -> HashMap<String, Box<dyn MethodHandler + Send + Sync>> {
    let mut out: HashMap<String, Box<dyn MethodHandler + Send + Sync>> = HashMap::new();
    for prefix in [V2, V3] {
        for (name, handler) in create_task(service.clone()) {
            let method = name.strip_prefix(V2).unwrap_or(&name);
            let handler: Box<dyn MethodHandler + Send + Sync> = match method {
                "Wait" => Box::new(ParkedWait(service.clone())),
                _ => handler,
            };
            out.insert(format!("{prefix}{method}"), handler);
        }
    }
    out
}

/// Wait: parks the request on the process (see [`crate::process::Process::on_exit`]).
struct ParkedWait(Arc<Service>);

/// The encoded response for a Wait outcome.
fn wait_response(result: ttrpc::Result<WaitResponse>) -> Response {
    let mut res = Response::new();
    match result.and_then(|r| {
        r.write_to_bytes()
            .map_err(|e| errors::status(Code::INTERNAL, format!("encode WaitResponse: {e}")))
    }) {
        Ok(payload) => {
            res.set_status(get_status(Code::OK, String::new()));
            res.payload = payload;
        }
        Err(ttrpc::Error::RpcStatus(s)) => res.set_status(s),
        Err(e) => res.set_status(get_status(Code::UNKNOWN, format!("{e:?}"))),
    }
    res
}

impl MethodHandler for ParkedWait {
    fn handler(&self, ctx: TtrpcContext, req: Request) -> ttrpc::Result<()> {
        let stream = ctx.mh.stream_id;
        let tx = ctx.res_tx.clone();
        let respond = move |r: ttrpc::Result<WaitResponse>| {
            // The client may be gone (containerd restarting): nothing to answer then.
            let _ = response_to_channel(stream, wait_response(r), tx);
        };
        let req = match WaitRequest::parse_from_bytes(&req.payload) {
            Ok(r) => r,
            Err(e) => {
                respond(Err(errors::invalid(format!("decode WaitRequest: {e}"))));
                return Ok(());
            }
        };
        let (task, exec) = match self.0.task_and_exec(&req.id, &req.exec_id) {
            Ok(found) => found,
            Err(e) => {
                respond(Err(e));
                return Ok(());
            }
        };
        let what = exec
            .as_ref()
            .map_or(format!("container {}", req.id), |e| e.what(&req.id));
        let process = exec.as_ref().map_or(&task.init, |e| &e.process);
        let cancel = ctx.cancel_rx.clone();
        process.on_exit(Parked {
            cancelled: Box::new(move || cancel.try_recv().is_err_and(|e| e.is_disconnected())),
            respond: Box::new(move |exit: Option<Exit>| {
                respond(match exit {
                    Some(exit) => Ok(WaitResponse {
                        exit_status: exit.status,
                        exited_at: MessageField::some(timestamp(exit.at)),
                        ..Default::default()
                    }),
                    None => Err(errors::status(
                        Code::NOT_FOUND,
                        format!("wait for {what}: deleted before it exited"),
                    )),
                })
            }),
        });
        Ok(())
    }
}
