//! The engine: the event loop that drains the inbox, the handlers it runs, and the
//! mission driver that acts on what they record.

pub mod event_loop;
pub mod handler;
pub mod missions;

pub use event_loop::{EventLoop, PassReport};
pub use handler::{DeliveryInfo, Handler, HandlerContext, HandlerRegistry, LoggingHandler};
