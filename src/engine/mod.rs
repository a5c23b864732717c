//! The engine: the event loop that drains the inbox, and the handlers it runs.

pub mod event_loop;
pub mod handler;

pub use event_loop::{EventLoop, PassReport};
pub use handler::{DeliveryInfo, Handler, HandlerContext, HandlerRegistry, LoggingHandler};
